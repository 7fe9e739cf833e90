from cvrun.cli import main

raise SystemExit(main())
