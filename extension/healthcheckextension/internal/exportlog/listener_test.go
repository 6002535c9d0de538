package exportlog

import (
	"bytes"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"

	"github.com/otelcol-istio/otelcol-istio/extension/healthcheckextension/internal/errclass"
)

func post(t *testing.T, addr net.Addr, errText string) error {
	t.Helper()
	body, err := plogotlp.NewExportRequestFromLogs(exportRequest("exporter", "otlp_grpc", errText)).MarshalProto()
	require.NoError(t, err)
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Post("http://"+addr.String()+"/v1/logs", "application/x-protobuf", bytes.NewReader(body))
	if err != nil {
		return err
	}
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	return nil
}

func freeEndpoint(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ep := ln.Addr().String()
	require.NoError(t, ln.Close())
	return ep
}

// TestListenerLingersForTheFinalFlush: after release, the collector's last
// log flush still gets through; then the port is closed.
func TestListenerLingersForTheFinalFlush(t *testing.T) {
	first := NewStore()
	addr, release, err := Listen(freeEndpoint(t), first)
	require.NoError(t, err)
	require.NoError(t, post(t, addr, "code = Unauthenticated"))
	release(300 * time.Millisecond)
	require.NoError(t, post(t, addr, "connection refused"), "still serving during the linger")
	e, _ := first.Last("otlp_grpc")
	assert.Equal(t, errclass.Unreachable, e.Class)
	require.Eventually(t, func() bool { return post(t, addr, "x") != nil }, 5*time.Second, 50*time.Millisecond)
}

// TestListenerIsTakenOverOnReload: a new extension on the same endpoint
// within the linger reuses the listener instead of failing to bind.
func TestListenerIsTakenOverOnReload(t *testing.T) {
	ep := freeEndpoint(t)
	first, second := NewStore(), NewStore()
	_, release1, err := Listen(ep, first)
	require.NoError(t, err)
	release1(time.Minute)
	addr, release2, err := Listen(ep, second)
	require.NoError(t, err)
	require.NoError(t, post(t, addr, "code = PermissionDenied"))
	_, ok := second.Last("otlp_grpc")
	assert.True(t, ok, "the new store receives")
	_, ok = first.Last("otlp_grpc")
	assert.False(t, ok)
	release1(0) // a second release of the first owner does nothing
	require.NoError(t, post(t, addr, "x"))
	release2(0)
	require.Error(t, post(t, addr, "x"), "closed without linger")
}

func TestListenErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	_, _, err = Listen(ln.Addr().String(), NewStore())
	require.ErrorContains(t, err, "listening for collector logs")
}
