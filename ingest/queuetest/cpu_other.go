//go:build !unix

package queuetest

import "time"

// cpuTime is not measured here: Rate.CPUPerEvent stays zero.
func cpuTime() time.Duration { return 0 }
