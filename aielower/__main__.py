from aielower.cli import main

raise SystemExit(main())
