package deps

import (
	_ "github.com/docker/cli/cli/compose/convert"
	_ "github.com/docker/cli/cli/compose/loader"
	_ "github.com/fluxcd/pkg/gittestserver"
	_ "github.com/google/go-cmp/cmp"
)
