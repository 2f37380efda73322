# Convenience recipes; each mirrors a step of .ci/run. Nothing requires `just`:
# the command under each recipe works as well typed by hand.

pg_url := env_var_or_default("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")

# Run the service (embedded SQLite unless DATABASE_URL is set).
serve:
    cargo run -p charlie-api -- serve

# Seed demo data and print development credentials (development only).
demo:
    cargo run -p charlie-devtools -- demo

# Apply migrations (pass e.g. `just migrate down`).
migrate action="up":
    cargo run -p charlie-api -- migrate {{action}}

fmt:
    cargo fmt --all --check

lint:
    cargo clippy --workspace --all-targets -- -D warnings
    ./.ci/check-layers

# Tests on the embedded SQLite.
test:
    cargo test --workspace

# Tests on PostgreSQL (a fresh database per test, dropped afterwards).
test-pg:
    TEST_DATABASE_URL={{pg_url}} cargo test --workspace

# Tests on a Citus cluster: pass the coordinator's admin database (README,
# "Moving from one PostgreSQL to Citus"). Not part of CI.
test-citus coordinator="postgres://postgres@127.0.0.1:5433/postgres?sslmode=disable":
    TEST_DATABASE_URL='{{coordinator}}' cargo test --workspace

# Regenerate the committed OpenAPI document.
openapi:
    cargo run -q -p charlie-api -- openapi > openapi/openapi.json

# Everything CI runs.
ci:
    bash .ci/run
