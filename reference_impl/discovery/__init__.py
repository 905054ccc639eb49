"""Discovery: instance records and the Dynamo-compatible file store."""
