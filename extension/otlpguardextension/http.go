package otlpguardextension // import "github.com/otelcol-istio/otelcol-istio/extension/otlpguardextension"

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"go.opentelemetry.io/collector/extension/extensionmiddleware"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/otelcol-istio/otelcol-istio/extension/otlpguardextension/internal/tracecheck"
)

const (
	contentProto = "application/x-protobuf"
	contentJSON  = "application/json"
	// retryAfterSeconds is what a request refused for the in-flight
	// budget is told to wait.
	retryAfterSeconds = 1
)

// GetHTTPHandler wraps the otlp receiver's HTTP handler. confighttp puts
// receiver middlewares inside its body limit and decompression: the body
// read here is decompressed and limited to max_request_body_size.
func (g *guard) GetHTTPHandler(context.Context) (extensionmiddleware.WrapHTTPHandlerFunc, error) {
	return func(_ context.Context, next http.Handler) (http.Handler, error) {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			g.serveHTTP(w, r, next) //nolint:contextcheck // the in-flight gauge takes context.Background: the gRPC codec that also moves it has no context
		}), nil
	}, nil
}

func (g *guard) serveHTTP(w http.ResponseWriter, r *http.Request, next http.Handler) {
	if r.Method != http.MethodPost {
		next.ServeHTTP(w, r)
		return
	}
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	refuse := func(code codes.Code, httpStatus int, reason, msg string, fields ...zap.Field) {
		g.refused(r.Context(), refusal{transport: "http", reason: reason, client: r.RemoteAddr, code: code, msg: msg, fields: fields})
		writeStatus(w, ct, httpStatus, code, msg)
	}
	// The body is read before it is admitted, as grpc-go reads a message:
	// admitting a Content-Length before reading would let slow senders
	// hold the budget while they dribble.
	body, err := readBody(r)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			refuse(codes.ResourceExhausted, http.StatusRequestEntityTooLarge, reasonRequestTooLarge,
				fmt.Sprintf("request body over the receiver's limit of %d bytes (after decompression)", tooLarge.Limit),
				zap.Int64("limit", tooLarge.Limit))
			return
		}
		// A broken compressed body or a client that went away: no content
		// to log, and the decompressor's message says what broke.
		refuse(codes.InvalidArgument, http.StatusBadRequest, string(tracecheck.Malformed), "failed to read the request body: "+err.Error())
		return
	}
	var counts tracecheck.Counts
	if isTracesPath(r.URL.Path) {
		var cerr *tracecheck.Error
		switch ct {
		case contentProto:
			counts, cerr = tracecheck.Proto(body, g.limits)
		case contentJSON:
			counts, cerr = tracecheck.JSON(body, g.limits)
		}
		if cerr != nil {
			code, fields := checkError(cerr)
			httpStatus := http.StatusBadRequest
			if code == codes.ResourceExhausted {
				httpStatus = http.StatusRequestEntityTooLarge
			}
			refuse(code, httpStatus, string(cerr.Reason), cerr.Error(), append(fields, zap.Int("request_bytes", len(body)))...)
			return
		}
	}
	// Admitted for its bytes and what it will decode to.
	reserved := int64(len(body)) + cost(counts)
	if !g.budget.acquire(reserved) {
		refuse(codes.Unavailable, http.StatusServiceUnavailable, reasonInFlight,
			"the collector is busy with other requests; retry later",
			zap.Int64("request_cost", reserved), zap.Int64("in_flight_limit", g.budget.limit))
		return
	}
	defer g.budget.release(reserved)
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	next.ServeHTTP(w, r)
}

// preallocMax caps what a request's Content-Length may pre-allocate: a slow
// sender that claims 4 MiB and dribbles it must hold only what it has sent
// (2,000 of them held 2 GiB when the claim was trusted). Envoy's exports are
// a few KiB, so they are read in one allocation all the same.
const preallocMax = 16 << 10

// readBody reads the whole body, pre-sized by Content-Length up to
// preallocMax; beyond that the buffer grows with what arrives.
func readBody(r *http.Request) ([]byte, error) {
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		buf.Grow(int(min(r.ContentLength, preallocMax)) + bytes.MinRead)
	}
	_, err := buf.ReadFrom(r.Body)
	return buf.Bytes(), err
}

// isTracesPath is the otlp receiver's default traces path. A receiver with
// another traces_url_path gets admission control but no content checks.
func isTracesPath(p string) bool { return strings.HasSuffix(p, "/v1/traces") }

// writeStatus answers with an OTLP Status (google.rpc.Status) in the
// request's encoding, as the otlp receiver answers its own errors.
func writeStatus(w http.ResponseWriter, contentType string, httpStatus int, code codes.Code, msg string) {
	st := status.New(code, msg).Proto()
	var body []byte
	var err error
	if contentType == contentJSON {
		body, err = protojson.Marshal(st)
	} else {
		contentType = contentProto
		body, err = proto.Marshal(st)
	}
	if err != nil {
		http.Error(w, msg, httpStatus)
		return
	}
	w.Header().Set("Content-Type", contentType)
	if httpStatus == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds))
	}
	w.WriteHeader(httpStatus)
	_, _ = w.Write(body)
}
