//! HTTP/1.1 layer (being written).
