"""Byte-level codecs. Sans-IO: nothing here touches a socket."""
