package deps

import (
	_ "github.com/compose-spec/compose-go/v2/loader"
	_ "github.com/docker/docker/client"
	_ "github.com/spf13/cobra"
	_ "sigs.k8s.io/yaml"
)
