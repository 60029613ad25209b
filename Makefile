# The two commands of the README: `make demo` runs the platform with a demo city,
# `make test` runs every test. Everything else here serves those two.
.PHONY: demo test web build release lint fmt

demo: web
	cargo run --release -p zhongshu -- demo

test:
	./scripts/test-all

web:
	cd web && npm ci --no-audit --no-fund --loglevel=error && npm run build

build: web
	cargo build --release -p zhongshu

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all
