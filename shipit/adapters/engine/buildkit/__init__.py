"""BuildKit through the Engine API: build requests, the status trace and build sessions."""
