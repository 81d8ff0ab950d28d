from pflowbsd.cli import main

raise SystemExit(main())
