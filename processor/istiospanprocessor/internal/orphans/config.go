// Package orphans finds the spans that a broken trace-context hop leaves
// behind: root CLIENT spans emitted by a sidecar whose application did not
// forward traceparent. It flags them (stateless, per span), re-links them to
// the SERVER span that received the original request when both share an
// x-request-id (stateful, bounded), and keeps a per-service propagation
// report. See README.md for the rules and their limits.
package orphans

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Defaults of the `orphans` block, as the contract states them.
const (
	DefaultWindow     = 30 * time.Second
	DefaultMaxTracked = 100000
)

// Config is what the detector takes: the processor's `orphans` block
// (istiospanprocessor.OrphansConfig, the type users write), validated here so
// that the rules live beside the code that depends on them.
type Config struct {
	// Enabled turns the whole detector on or off.
	Enabled bool
	// Origins are workloads that really start requests (cron jobs, load
	// generators), as "name" or "name.namespace"; their CLIENT roots are
	// never flagged.
	Origins []string
	// LinkByRequestID re-links orphans to their probable parent through
	// guid:x-request-id.
	LinkByRequestID bool
	// Window is how long a request id is remembered after it is first seen.
	Window time.Duration
	// MaxTracked bounds the number of remembered request ids; the oldest is
	// evicted first.
	MaxTracked int

	// prevent unkeyed literal initialization
	_ struct{}
}

// DefaultConfig returns the defaults: enabled, no origins, re-linking on,
// a 30s window and at most 100000 remembered request ids.
func DefaultConfig() Config {
	return Config{
		Enabled:         true,
		Origins:         []string{},
		LinkByRequestID: true,
		Window:          DefaultWindow,
		MaxTracked:      DefaultMaxTracked,
	}
}

var (
	errWindow     = errors.New("orphans.window must be > 0")
	errMaxTracked = errors.New("orphans.max_tracked must be > 0")
	errOrigin     = errors.New(`orphans.origins entries must be "name" or "name.namespace", non-empty and without spaces`)
)

// Validate reports the first bad key, named as it appears in the config.
func (c Config) Validate() error {
	var errs []error
	if c.Window <= 0 {
		errs = append(errs, fmt.Errorf("%w (got %s)", errWindow, c.Window))
	}
	if c.MaxTracked <= 0 {
		errs = append(errs, fmt.Errorf("%w (got %d)", errMaxTracked, c.MaxTracked))
	}
	for i, o := range c.Origins {
		if o == "" || strings.ContainsAny(o, " \t\r\n") || strings.HasPrefix(o, ".") || strings.HasSuffix(o, ".") {
			errs = append(errs, fmt.Errorf("%w: orphans.origins[%d] is %q", errOrigin, i, o))
		}
	}
	return errors.Join(errs...)
}
