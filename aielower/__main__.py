from aielower.cli import main

if __name__ == "__main__":  # not when a worker process imports it (design_jobs starts workers with spawn)
    raise SystemExit(main())
