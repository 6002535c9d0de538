package backendauthextension // import "github.com/otelcol-istio/otelcol-istio/extension/backendauthextension"

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The error classes of an export attempt: a fixed vocabulary, so that what
// health_check and componentstatus show never carries backend text.
const (
	ClassCredentials  = "backend rejected credentials"
	ClassUnreachable  = "backend unreachable"
	ClassOverloaded   = "backend overloaded"
	ClassTimeout      = "backend timed out"
	ClassRejectedData = "backend rejected data"
	ClassTLS          = "TLS handshake failed"
	ClassServerError  = "backend failed"
	ClassOther        = "export failed"
)

// outcome is what one export attempt came to. A zero outcome is a success.
type outcome struct {
	class string
	// code is the typed cause: a gRPC code name ("Unauthenticated"), "HTTP
	// 413", or a network cause ("ConnectionRefused", "DNS", "TLS").
	code string
	// tooLarge is set when the backend refused the export for its size.
	tooLarge bool
}

func (o outcome) ok() bool { return o.class == "" }

func (o outcome) String() string {
	if o.ok() {
		return "ok"
	}
	return o.class + " (" + o.code + ")"
}

// classifyGRPC classifies the result of one gRPC export call. answered says
// whether the call reached the backend (grpc.Peer was filled in): a code the
// backend sent is taken at its word, a code grpc-go made up because no
// connection could be made is a transport failure.
func classifyGRPC(err error, answered bool) (outcome, bool) {
	if err == nil {
		return outcome{}, true
	}
	st, isStatus := status.FromError(err)
	if !isStatus {
		return classifyNet(err)
	}
	code := st.Code()
	if code == codes.Canceled {
		// The exporter gave up (shutdown): not the backend's doing.
		return outcome{}, false
	}
	if !answered && code == codes.Unavailable {
		return transportFailure(st.Message()), true
	}
	o := outcome{code: code.String()}
	switch code {
	case codes.Unauthenticated, codes.PermissionDenied:
		o.class = ClassCredentials
	case codes.ResourceExhausted:
		// grpc-go answers an oversized message with ResourceExhausted and this
		// text, on either side; there is no other signal for it.
		if strings.Contains(st.Message(), "larger than max") {
			o.class, o.tooLarge = ClassRejectedData, true
		} else {
			o.class = ClassOverloaded
		}
	case codes.Unavailable, codes.Aborted:
		o.class = ClassOverloaded
	case codes.DeadlineExceeded:
		o.class = ClassTimeout
	case codes.InvalidArgument, codes.FailedPrecondition, codes.OutOfRange, codes.Unimplemented:
		o.class = ClassRejectedData
	case codes.Internal, codes.Unknown, codes.DataLoss:
		o.class = ClassServerError
	default:
		o.class = ClassOther
	}
	return o, true
}

// transportFailure classifies a gRPC Unavailable that grpc-go produced itself
// because no connection could be made. grpc-go does not wrap the dial or
// handshake error in the status, so its description is all there is.
func transportFailure(desc string) outcome {
	d := strings.ToLower(desc)
	switch {
	case strings.Contains(d, "handshake") || strings.Contains(d, "x509") || strings.Contains(d, "tls:"):
		return outcome{class: ClassTLS, code: "TLS"}
	case strings.Contains(d, "connection refused"):
		return outcome{class: ClassUnreachable, code: "ConnectionRefused"}
	case strings.Contains(d, "no such host") || strings.Contains(d, "name resolution") || strings.Contains(d, "produced zero addresses"):
		return outcome{class: ClassUnreachable, code: "DNS"}
	case strings.Contains(d, "connection reset") || strings.Contains(d, "broken pipe") || strings.Contains(d, "eof"):
		return outcome{class: ClassUnreachable, code: "ConnectionReset"}
	case strings.Contains(d, "timeout") || strings.Contains(d, "deadline"):
		return outcome{class: ClassUnreachable, code: "ConnectTimeout"}
	}
	return outcome{class: ClassUnreachable, code: "Unavailable"}
}

// classifyHTTP classifies one HTTP export round trip.
func classifyHTTP(resp *http.Response, err error) (outcome, bool) {
	if err != nil {
		return classifyNet(err)
	}
	sc := resp.StatusCode
	o := outcome{code: fmt.Sprintf("HTTP %d", sc)}
	switch {
	case sc >= 200 && sc < 300:
		return outcome{}, true
	case sc == http.StatusUnauthorized || sc == http.StatusForbidden:
		o.class = ClassCredentials
	case sc == http.StatusRequestEntityTooLarge:
		o.class, o.tooLarge = ClassRejectedData, true
	case sc == http.StatusTooManyRequests || sc == http.StatusServiceUnavailable:
		o.class = ClassOverloaded
	case sc == http.StatusBadGateway:
		o.class = ClassUnreachable
	case sc == http.StatusGatewayTimeout || sc == http.StatusRequestTimeout:
		o.class = ClassTimeout
	case sc >= 400 && sc < 500:
		o.class = ClassRejectedData
	case sc >= 500:
		o.class = ClassServerError
	default:
		o.class = ClassOther
	}
	return o, true
}

// classifyNet classifies a Go error from dialing, TLS or the round trip. It
// reports false for a cancelled context: the exporter stopped the attempt.
func classifyNet(err error) (outcome, bool) {
	var (
		dnsErr    *net.DNSError
		unknownCA x509.UnknownAuthorityError
		hostErr   x509.HostnameError
		invalid   x509.CertificateInvalidError
		verifyErr *tls.CertificateVerificationError
		recordErr tls.RecordHeaderError
		alertErr  tls.AlertError
		netErr    net.Error
	)
	switch {
	case errors.Is(err, context.Canceled):
		return outcome{}, false
	case errors.As(err, &verifyErr), errors.As(err, &unknownCA), errors.As(err, &hostErr),
		errors.As(err, &invalid), errors.As(err, &recordErr), errors.As(err, &alertErr):
		return outcome{class: ClassTLS, code: "TLS"}, true
	case errors.As(err, &dnsErr):
		return outcome{class: ClassUnreachable, code: "DNS"}, true
	case errors.Is(err, syscall.ECONNREFUSED):
		return outcome{class: ClassUnreachable, code: "ConnectionRefused"}, true
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return outcome{class: ClassUnreachable, code: "ConnectionReset"}, true
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return outcome{class: ClassTimeout, code: "DeadlineExceeded"}, true
	case errors.As(err, &netErr):
		return outcome{class: ClassUnreachable, code: "Network"}, true
	}
	return outcome{class: ClassOther, code: "Other"}, true
}
