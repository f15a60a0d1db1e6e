package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"time"
)

// latencies collects per-operation latencies for quantiles.
type latencies []time.Duration

// quantile returns the q-quantile (0..1) of the sorted latencies.
func (l latencies) quantile(q float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	i := int(q * float64(len(l)))
	if i >= len(l) {
		i = len(l) - 1
	}
	return l[i]
}

func mergeSorted(parts []latencies) latencies {
	var all latencies
	for _, p := range parts {
		all = append(all, p...)
	}
	slices.Sort(all)
	return all
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	return enc.Encode(v)
}

// benchDir makes a fresh directory for a benchmark's data under parent
// (created if needed) and returns it with a function that removes it.
func benchDir(parent, prefix string) (string, func(), error) {
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return "", nil, fmt.Errorf("bench: create %s: %w", parent, err)
	}
	dir, err := os.MkdirTemp(parent, prefix)
	if err != nil {
		return "", nil, fmt.Errorf("bench: %w", err)
	}
	return dir, func() {
		os.RemoveAll(dir)
		os.Remove(parent) // only if empty: never remove what we did not make
	}, nil
}
