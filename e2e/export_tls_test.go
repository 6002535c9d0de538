package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/otelcol-istio/otelcol-istio/e2e/harness"
)

// testPKI is a throwaway CA with a server certificate for 127.0.0.1 and a
// client certificate, written as PEM files for the collector's configtls keys.
type testPKI struct {
	CAFile, ServerCert, ServerKey, ClientCert, ClientKey string
	pool                                                 *x509.CertPool
	server                                               tls.Certificate
}

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	dir := t.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "otelcol-istio e2e CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	p := &testPKI{pool: x509.NewCertPool()}
	p.pool.AddCert(ca)
	p.CAFile = writePEM(t, dir, "ca.pem", "CERTIFICATE", caDER)
	issue := func(name string, serial int64, usage x509.ExtKeyUsage) (certFile, keyFile string, cert tls.Certificate) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		certFile = writePEM(t, dir, name+".pem", "CERTIFICATE", der)
		keyFile = writePEM(t, dir, name+"-key.pem", "EC PRIVATE KEY", keyDER)
		cert, err = tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		return certFile, keyFile, cert
	}
	p.ServerCert, p.ServerKey, p.server = issue("server", 2, x509.ExtKeyUsageServerAuth)
	p.ClientCert, p.ClientKey, _ = issue("client", 3, x509.ExtKeyUsageClientAuth)
	return p
}

func writePEM(t testing.TB, dir, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// tlsProxy terminates TLS in front of a plaintext harness backend port, so
// the collector's real TLS client path is tested against the real backend.
// alpn is "h2" in front of the gRPC server, "http/1.1" in front of HTTP.
type tlsProxy struct {
	Addr string
	l    net.Listener
	wg   sync.WaitGroup
	mu   sync.Mutex
	// handshakes counts completed TLS handshakes, with the client
	// certificate's common name ("" without one).
	handshakes []string
}

func startTLSProxy(t testing.TB, p *testPKI, upstream, alpn string, requireClientCert bool) *tlsProxy {
	t.Helper()
	cfg := &tls.Config{Certificates: []tls.Certificate{p.server}, NextProtos: []string{alpn}, MinVersion: tls.VersionTLS12}
	if requireClientCert {
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
		cfg.ClientCAs = p.pool
	}
	l, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	px := &tlsProxy{Addr: l.Addr().String(), l: l}
	px.wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			px.wg.Go(func() { px.serve(c.(*tls.Conn), upstream) })
		}
	})
	t.Cleanup(func() { l.Close(); px.wg.Wait() })
	return px
}

func (px *tlsProxy) serve(c *tls.Conn, upstream string) {
	defer c.Close()
	if err := c.Handshake(); err != nil {
		return
	}
	cn := ""
	if certs := c.ConnectionState().PeerCertificates; len(certs) > 0 {
		cn = certs[0].Subject.CommonName
	}
	px.mu.Lock()
	px.handshakes = append(px.handshakes, cn)
	px.mu.Unlock()
	u, err := net.Dial("tcp", upstream)
	if err != nil {
		return
	}
	defer u.Close()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(u, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, u); done <- struct{}{} }()
	<-done
}

func (px *tlsProxy) clientNames() []string {
	px.mu.Lock()
	defer px.mu.Unlock()
	return append([]string(nil), px.handshakes...)
}

// tlsEnv is shippedEnv without the plaintext opt-in, pointed at a TLS proxy.
func tlsEnv(t *testing.T, backend *harness.Backend, transport string, px *tlsProxy) map[string]string {
	env := shippedEnv(backend, transport, t.TempDir())
	delete(env, "OTLP_BACKEND_INSECURE")
	env["OTLP_BACKEND_ENDPOINT"] = px.Addr
	if transport == "http" {
		env["OTLP_BACKEND_ENDPOINT"] = "https://" + px.Addr
	}
	return env
}

// startProxyFor puts a TLS proxy in front of the backend's port for transport.
func startProxyFor(t *testing.T, p *testPKI, backend *harness.Backend, transport string, mTLS bool) *tlsProxy {
	if transport == "http" {
		return startTLSProxy(t, p, strings.TrimPrefix(backend.HTTPEndpoint(), "http://"), "http/1.1", mTLS)
	}
	return startTLSProxy(t, p, backend.GRPCEndpoint(), "h2", mTLS)
}

// TLS is on by default and trusts the system CA pool: with the test CA made
// the system pool (SSL_CERT_FILE, which Go reads on Linux) and no TLS key in
// the config, spans and token arrive through TLS, and no warning is logged.
func TestExportTLSByDefaultWithSystemCAs(t *testing.T) {
	p := newTestPKI(t)
	for _, transport := range []string{"grpc", "http"} {
		t.Run(transport, func(t *testing.T) {
			t.Parallel()
			backend := harness.StartBackend(t)
			px := startProxyFor(t, p, backend, transport, false)
			env := tlsEnv(t, backend, transport, px)
			env["SSL_CERT_FILE"] = p.CAFile
			col := startShipped(t, transport, env)
			backend.WaitForSpans(sendFixture(t, col).SpanCount(), 15*time.Second)
			if got := lastHeader(backend, "authentication"); len(got) != 1 || got[0] != testToken {
				t.Errorf("token header %q", got)
			}
			if len(px.clientNames()) == 0 {
				t.Error("no TLS handshake at the proxy")
			}
			if strings.Contains(col.Logs(), "OTLP_BACKEND_INSECURE") {
				t.Error("plaintext warning logged although TLS is on")
			}
		})
	}
}

// A custom CA and a client certificate (mTLS) work through the standard
// configtls keys merged over the shipped config.
func TestExportCustomCAAndMTLS(t *testing.T) {
	p := newTestPKI(t)
	for _, transport := range []string{"grpc", "http"} {
		t.Run(transport, func(t *testing.T) {
			t.Parallel()
			backend := harness.StartBackend(t)
			px := startProxyFor(t, p, backend, transport, true)
			exporter := shippedExporter(transport)
			tlsKeys := writeConfig(t, fmt.Sprintf(`
exporters:
  %s:
    tls:
      ca_file: %s
      cert_file: %s
      key_file: %s
`, exporter, p.CAFile, p.ClientCert, p.ClientKey))
			col := startShipped(t, transport, tlsEnv(t, backend, transport, px), tlsKeys)
			backend.WaitForSpans(sendFixture(t, col).SpanCount(), 15*time.Second)
			if names := px.clientNames(); len(names) == 0 || names[0] != "client" {
				t.Errorf("proxy saw client certificates %q, want the test client's", names)
			}
		})
	}
}

// Without OTLP_BACKEND_INSECURE, a plaintext backend gets nothing: the
// exporter insists on TLS, so the token never crosses the network in clear.
func TestExportNoPlaintextWithoutOptIn(t *testing.T) {
	backend := harness.StartBackend(t)
	env := shippedEnv(backend, "grpc", t.TempDir())
	delete(env, "OTLP_BACKEND_INSECURE")
	col := startShipped(t, "grpc", env)
	sendFixture(t, col)
	time.Sleep(3 * time.Second)
	if n := len(backend.Requests()); n != 0 {
		t.Errorf("a plaintext backend received %d requests without OTLP_BACKEND_INSECURE", n)
	}
}
