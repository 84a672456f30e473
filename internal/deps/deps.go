// Package deps pins the project's direct dependencies in go.mod while the packages that
// use them are being written; it is removed once each is imported for real.
package deps

import (
	_ "github.com/aliyun/alibaba-cloud-sdk-go/services/slb"
	_ "github.com/compose-spec/compose-go/v2/loader"
	_ "github.com/docker/docker/client"
	_ "github.com/go-git/go-git/v5"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/spf13/cobra"
	_ "sigs.k8s.io/yaml"
)
