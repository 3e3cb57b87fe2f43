"""Original model code of models no maintained package provides, with its licence files."""
