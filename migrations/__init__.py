"""paystore's Alembic migrations, shipped in the package as `paystore.migrations` (pyproject.toml
maps this top-level folder there), so that Alembic finds them as a package resource,
`script_location = "paystore.migrations:"`, from a checkout and from an installed wheel alike."""
