// Package queuestorageextension is a storage extension for persistent
// sending queues: an append-only journal per component, in which each queue
// item is written once and is on disk before the queue acknowledges it.
package queuestorageextension // import "github.com/otelcol-istio/otelcol-istio/extension/queuestorageextension"

import (
	"context"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/extension"

	"github.com/otelcol-istio/otelcol-istio/extension/queuestorageextension/internal/journal"
	"github.com/otelcol-istio/otelcol-istio/extension/queuestorageextension/internal/metadata"
)

// NewFactory returns the factory of the queue_storage extension.
func NewFactory() extension.Factory {
	return extension.NewFactory(metadata.Type, createDefaultConfig, create, metadata.ExtensionStability)
}

func createDefaultConfig() component.Config {
	return &Config{
		FSync:             true,
		SyncInterval:      time.Second,
		SegmentSize:       journal.DefaultSegmentSize,
		ImportFileStorage: true,
	}
}

func create(_ context.Context, set extension.Settings, cfg component.Config) (extension.Extension, error) {
	return newQueueStorage(cfg.(*Config), set.TelemetrySettings)
}
