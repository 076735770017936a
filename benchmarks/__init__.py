"""shipit's benchmark harness (issue 6): one command, real components, a written report.

    .venv/bin/python -m benchmarks            # full: 9 alternated runs per side, docs/benchmarks.md
    .venv/bin/python -m benchmarks --quick    # CI: 1 run per side, smallest sizes, a temp file

Every case times whole commands run as subprocesses (``time.perf_counter``) against the same
real components the integration tests use (through benchmarks/support.py, the one module that
imports tests/support): the Docker engine, Debian's ``docker-registry`` on loopback, and moto's
server standing in for AWS. The build cases (11-14) compare against ``DOCKER_BUILDKIT=1
/usr/bin/docker build``, the Debian 20.10 CLI's BuildKit client. Targets are measured and
reported, never asserted: a missed target is written down with the profile that explains it and
exits 0; only a crash (a command that fails, a harness error) exits non-zero.
"""
