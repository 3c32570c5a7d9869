# Short targets; logic that grows lives in scripts/.
.PHONY: test
test:
	cargo test --workspace
