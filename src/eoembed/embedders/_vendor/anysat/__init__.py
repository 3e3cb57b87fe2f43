"""AnySat original model code (github.com/gastruc/AnySat, MIT), vendored from rs-embed 0.3.1."""
