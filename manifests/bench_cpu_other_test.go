//go:build !unix

package manifests

import "time"

func processCPU() time.Duration { return -1 }
