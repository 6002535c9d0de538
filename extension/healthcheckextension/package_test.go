package healthcheckextension

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// Close the logs listener at Shutdown so goleak sees no server goroutine;
	// the linger itself is tested in internal/exportlog.
	logsLinger = 0
	goleak.VerifyTestMain(m)
}
