package exportlog // import "github.com/otelcol-istio/otelcol-istio/extension/healthcheckextension/internal/exportlog"

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// A listener outlives the extension that opened it, for a linger period.
//
// The collector shuts its telemetry down after its extensions, and the log
// SDK then flushes the last records ("Shutdown complete.") to this listener.
// If the listener were already closed, that flush fails and the collector
// exits with status 1 on every shutdown. So release keeps the listener
// serving for a while, and an extension started meanwhile on the same
// endpoint (a config reload) takes it over instead of failing to bind.
type listener struct {
	srv   *http.Server
	done  chan struct{}
	addr  net.Addr
	store atomic.Pointer[Store]
	refs  int
	timer *time.Timer
}

var (
	listenersMu sync.Mutex
	listeners   = map[string]*listener{}
)

// Timeouts of the logs listener; the collector's exporter sends small batches.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	writeTimeout      = 10 * time.Second
)

// Listen serves store on endpoint (host:port) and returns the bound address
// and a release function. release(linger) stops serving after linger; a
// later Listen on the same endpoint within linger reuses the listener.
func Listen(endpoint string, store *Store) (net.Addr, func(linger time.Duration), error) {
	listenersMu.Lock()
	defer listenersMu.Unlock()
	l, ok := listeners[endpoint]
	if ok {
		if l.timer != nil {
			l.timer.Stop()
			l.timer = nil
		}
	} else {
		ln, err := net.Listen("tcp", endpoint)
		if err != nil {
			return nil, nil, fmt.Errorf("listening for collector logs: %w", err)
		}
		l = &listener{done: make(chan struct{}), addr: ln.Addr()}
		l.srv = &http.Server{
			Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				l.store.Load().Handler().ServeHTTP(w, r)
			}),
			ReadHeaderTimeout: readHeaderTimeout,
			ReadTimeout:       readTimeout,
			WriteTimeout:      writeTimeout,
		}
		if _, port, _ := net.SplitHostPort(endpoint); port == "0" {
			endpoint = l.addr.String() // an ephemeral port is never shared
		}
		listeners[endpoint] = l
		go func() {
			defer close(l.done)
			if err := l.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				_ = ln.Close()
			}
		}()
	}
	l.refs++
	l.store.Store(store)
	var once sync.Once
	release := func(linger time.Duration) {
		once.Do(func() { l.release(endpoint, linger) })
	}
	return l.addr, release, nil
}

func (l *listener) release(endpoint string, linger time.Duration) {
	listenersMu.Lock()
	l.refs--
	if l.refs > 0 {
		listenersMu.Unlock()
		return
	}
	if linger > 0 {
		var t *time.Timer
		t = time.AfterFunc(linger, func() {
			listenersMu.Lock()
			if l.timer != t || l.refs > 0 {
				listenersMu.Unlock()
				return
			}
			delete(listeners, endpoint)
			listenersMu.Unlock()
			_ = l.srv.Close()
		})
		l.timer = t
		listenersMu.Unlock()
		return
	}
	delete(listeners, endpoint)
	listenersMu.Unlock()
	_ = l.srv.Close()
	<-l.done
}
