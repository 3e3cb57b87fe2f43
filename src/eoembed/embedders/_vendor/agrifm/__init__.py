"""AgriFM original model code (github.com/flyakon/AgriFM, Apache-2.0), vendored from rs-embed 0.3.1."""
