package otlpguardextension // import "github.com/otelcol-istio/otelcol-istio/extension/otlpguardextension"

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"sync"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"

	"github.com/otelcol-istio/otelcol-istio/extension/otlpguardextension/internal/tracecheck"
)

// On gRPC, grpc-go reads a whole message (within max_recv_msg_size_mib)
// before anything of ours runs. Three server options share the work:
//
//   - a codec sees the raw message before pdata decodes it: it walks it,
//     admits it into the budget, and decodes it only if both pass.
//     A codec cannot choose the status (grpc-go answers every Unmarshal
//     error with Internal), so a refused message is left undecoded and its
//     verdict kept, keyed by the message it was to fill;
//   - a stats handler moves that verdict and reservation into the RPC's
//     context when grpc-go reports the message (InPayload, right after
//     Unmarshal), releases the reservation when the RPC ends (End, which
//     always comes), and counts messages grpc-go refused for size;
//   - a unary interceptor answers a refused RPC with the verdict's status
//     instead of calling the receiver.

// GetGRPCServerOptions returns the codec, stats handler and interceptor.
func (g *guard) GetGRPCServerOptions(context.Context) ([]grpc.ServerOption, error) {
	delegate := encoding.GetCodecV2("proto") // pdata's pooled codec, registered at init
	if delegate == nil {
		return nil, errors.New("otlp_guard: no gRPC proto codec registered")
	}
	c := &guardCodec{g: g, delegate: delegate}
	return []grpc.ServerOption{
		grpc.ForceServerCodecV2(c),
		grpc.StatsHandler(&guardStats{g: g, codec: c}),
		grpc.ChainUnaryInterceptor(g.unaryInterceptor),
	}, nil
}

// verdict is what the codec decided about one message.
type verdict struct {
	reserved int64
	code     codes.Code // codes.OK: admitted and decoded
	reason   string
	msg      string
	fields   []zap.Field
}

// unmarshaler is pdata's request types' own decoding, which the codec
// calls on the bytes it has checked.
type unmarshaler interface {
	UnmarshalProto([]byte) error
}

type guardCodec struct {
	g        *guard
	delegate encoding.CodecV2
	pending  sync.Map // message pointer -> *verdict, until InPayload
}

func (c *guardCodec) Name() string { return c.delegate.Name() }

func (c *guardCodec) Marshal(v any) (mem.BufferSlice, error) { return c.delegate.Marshal(v) }

func (c *guardCodec) Unmarshal(data mem.BufferSlice, v any) error {
	n := int64(data.Len())
	um, ok := v.(unmarshaler)
	if !ok || !isTraceRequest(v) {
		if !c.g.budget.acquire(n) {
			c.pending.Store(v, c.busy(n))
			return nil
		}
		if err := c.delegate.Unmarshal(data, v); err != nil {
			c.g.budget.release(n)
			return err
		}
		c.pending.Store(v, &verdict{reserved: n})
		return nil
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	b := buf.ReadOnlyData()
	counts, cerr := tracecheck.Proto(b, c.g.limits)
	if cerr != nil {
		code, fields := checkError(cerr)
		c.pending.Store(v, &verdict{code: code, reason: string(cerr.Reason), msg: cerr.Error(),
			fields: append(fields, zap.Int64("request_bytes", n))})
		return nil
	}
	// Admitted for its bytes and what it will decode to, before decoding.
	reserved := n + cost(counts)
	if !c.g.budget.acquire(reserved) {
		c.pending.Store(v, c.busy(reserved))
		return nil
	}
	if err := um.UnmarshalProto(b); err != nil {
		c.g.budget.release(reserved)
		return err
	}
	c.pending.Store(v, &verdict{reserved: reserved})
	return nil
}

// busy is the verdict for a request the in-flight budget cannot take.
func (c *guardCodec) busy(n int64) *verdict {
	return &verdict{code: codes.Unavailable, reason: reasonInFlight,
		msg:    "the collector is busy with other requests; retry later",
		fields: []zap.Field{zap.Int64("request_cost", n), zap.Int64("in_flight_limit", c.g.budget.limit)}}
}

// isTraceRequest is pdata's ExportTraceServiceRequest (an internal type:
// known by name only). Other signals get admission control, no walk.
func isTraceRequest(v any) bool {
	return strings.HasSuffix(reflect.TypeOf(v).String(), ".ExportTraceServiceRequest")
}

type rpcStateKey struct{}

// rpcState is one RPC's verdict, from InPayload to End.
type rpcState struct {
	mu      sync.Mutex
	verdict *verdict
}

type guardStats struct {
	g     *guard
	codec *guardCodec
}

func (*guardStats) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (*guardStats) HandleConn(context.Context, stats.ConnStats)                       {}

func (*guardStats) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context {
	return context.WithValue(ctx, rpcStateKey{}, &rpcState{})
}

func (s *guardStats) HandleRPC(ctx context.Context, rs stats.RPCStats) {
	st, _ := ctx.Value(rpcStateKey{}).(*rpcState)
	if st == nil {
		return
	}
	switch ev := rs.(type) {
	case *stats.InPayload:
		if v, ok := s.codec.pending.LoadAndDelete(ev.Payload); ok {
			st.mu.Lock()
			st.verdict = v.(*verdict)
			st.mu.Unlock()
		}
	case *stats.End:
		st.mu.Lock()
		v := st.verdict
		st.verdict = nil
		st.mu.Unlock()
		if v != nil {
			s.g.budget.release(v.reserved)
			return
		}
		// No message reached the codec: grpc-go refused it, and
		// ResourceExhausted is its answer to a message over
		// max_recv_msg_size_mib (before or after decompression).
		if status.Code(ev.Error) == codes.ResourceExhausted {
			s.g.refused(ctx, refusal{transport: "grpc", reason: reasonRequestTooLarge, client: clientAddr(ctx),
				code: codes.ResourceExhausted, msg: status.Convert(ev.Error).Message()})
		}
	}
}

func (g *guard) unaryInterceptor(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if st, _ := ctx.Value(rpcStateKey{}).(*rpcState); st != nil {
		st.mu.Lock()
		v := st.verdict
		st.mu.Unlock()
		if v != nil && v.code != codes.OK {
			g.refused(ctx, refusal{transport: "grpc", reason: v.reason, client: clientAddr(ctx), code: v.code, msg: v.msg, fields: v.fields})
			return nil, status.Error(v.code, v.msg)
		}
	}
	return handler(ctx, req)
}

func clientAddr(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return p.Addr.String()
	}
	return ""
}
