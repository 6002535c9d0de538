package groupcommitprocessor // import "github.com/otelcol-istio/otelcol-istio/processor/groupcommitprocessor"

import (
	"errors"
	"fmt"
	"time"
)

// Config bounds the groups of requests merged into one write.
type Config struct {
	// MaxSpans is the most spans a merged write carries. A request that would
	// take a group over it starts the next group. A single request larger than
	// it is written alone, never split.
	MaxSpans int `mapstructure:"max_spans"`
	// MaxBytes is the most bytes (OTLP protobuf size) a merged write carries,
	// with the same rule as MaxSpans. 0 means no byte bound (and no sizing
	// cost per waiting request).
	MaxBytes int `mapstructure:"max_bytes"`
	// MaxItems is the most items (as otlp_guard counts them: resource spans,
	// scope spans, spans, events, links, attributes, array and map elements)
	// a merged write carries, with the same rule as MaxSpans. A queue item is
	// decoded again before export; this bounds the memory each one takes
	// then. 0 means no item bound.
	MaxItems int `mapstructure:"max_items"`
	// MaxWait bounds how long a request that finds no write in flight waits
	// for other requests to share its write, under load only (see
	// committer.gatherTime). 0: never wait, write at once.
	MaxWait time.Duration `mapstructure:"max_wait"`

	// Prevents unkeyed literals.
	_ struct{}
}

var (
	errMaxSpans = errors.New("max_spans must be at least 1")
	errMaxBytes = errors.New("max_bytes must be 0 (no bound) or positive")
	errMaxItems = errors.New("max_items must be 0 (no bound) or positive")
	errMaxWait  = errors.New("max_wait must be 0 (never wait) or positive")
)

// Validate checks the bounds.
func (c *Config) Validate() error {
	var errs []error
	if c.MaxSpans < 1 {
		errs = append(errs, fmt.Errorf("%w, got %d", errMaxSpans, c.MaxSpans))
	}
	if c.MaxBytes < 0 {
		errs = append(errs, fmt.Errorf("%w, got %d", errMaxBytes, c.MaxBytes))
	}
	if c.MaxItems < 0 {
		errs = append(errs, fmt.Errorf("%w, got %d", errMaxItems, c.MaxItems))
	}
	if c.MaxWait < 0 {
		errs = append(errs, fmt.Errorf("%w, got %s", errMaxWait, c.MaxWait))
	}
	return errors.Join(errs...)
}
