"""paystore's Alembic migrations, shipped in the package as `paystore.migrations` (pyproject.toml
maps this top-level folder there), so that Alembic finds them as a package resource,
`script_location = "paystore.migrations:"`, in an installed wheel; a checkout that is not
installed uses this folder by its path (paystore.migrate.script_location)."""
