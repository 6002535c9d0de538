package queuestorageextension // import "github.com/otelcol-istio/otelcol-istio/extension/queuestorageextension"

import (
	"errors"
	"fmt"
	"time"
)

// Config is the queue_storage extension's configuration.
type Config struct {
	// Directory holds one journal (a directory of segment files) per
	// component that asks for storage.
	Directory string `mapstructure:"directory"`
	// CreateDirectory creates Directory at start when it does not exist.
	CreateDirectory bool `mapstructure:"create_directory"`
	// FSync makes each write of a new key (a queue item) durable before the
	// write returns. Off: a process crash loses nothing, a node crash may.
	FSync bool `mapstructure:"fsync"`
	// SyncInterval bounds how long overwrites and deletes (the queue's read
	// position and its deletes of exported items) may stay unsynced when no
	// new item comes to sync them. Losing them to a node crash re-sends
	// already exported items; it never loses one.
	SyncInterval time.Duration `mapstructure:"sync_interval"`
	// SegmentSize is the size of the journal's segment files.
	SegmentSize int64 `mapstructure:"segment_size"`
	// ImportFileStorage moves what a file_storage extension left for the
	// same component in Directory into the journal at the first start.
	ImportFileStorage bool `mapstructure:"import_file_storage"`

	// Prevents unkeyed literals.
	_ struct{}
}

const minSegmentSize = 1 << 20

// Validate checks the configuration.
func (c *Config) Validate() error {
	var errs []error
	if c.Directory == "" {
		errs = append(errs, errors.New("directory must be set"))
	}
	if c.SyncInterval <= 0 {
		errs = append(errs, fmt.Errorf("sync_interval must be positive, got %s", c.SyncInterval))
	}
	if c.SegmentSize < minSegmentSize {
		errs = append(errs, fmt.Errorf("segment_size must be at least %d (1 MiB), got %d", minSegmentSize, c.SegmentSize))
	}
	return errors.Join(errs...)
}
