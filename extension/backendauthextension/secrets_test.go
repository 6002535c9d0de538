package backendauthextension

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/config/configopaque"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Tokens that escaping changes: quotes, backslashes, non-ASCII, URL
// reserved characters. Spaces: every case sends the header value
// "Bearer <token>", which has one, and both it and the bare token are echoed;
// a token with a space inside is refused by Validate (bearertokenauth would
// send only its first word).
var hardTokens = map[string]string{
	"quotes":     `tok"Zq\7x9`,
	"backslash":  `a\b\\c-123\n`,
	"non-ascii":  "tök-ключ-密钥-🔑9",
	"url-unsafe": "a+b/c=d&e?f%20",
}

// echoed are the forms a backend writes a header value back in, each built
// the way the backend's language would, independently of echoForms.
var echoed = map[string]func(string) string{
	"raw":    func(v string) string { return v },
	"go-%q":  func(v string) string { return fmt.Sprintf("%q", v) },
	"go-%+q": func(v string) string { return fmt.Sprintf("%+q", v) },
	"json": func(v string) string {
		b, _ := json.Marshal(v)
		return string(b)
	},
	"json-ascii": func(v string) string { // Python's json.dumps, Jackson's ESCAPE_NON_ASCII
		b, _ := json.Marshal(v)
		var out strings.Builder
		for _, r := range string(b) {
			if r < 0x80 {
				out.WriteRune(r)
				continue
			}
			for _, u := range utf16Units(r) {
				fmt.Fprintf(&out, `\u%04X`, u) // upper-case hex, as Jackson writes it
			}
		}
		return out.String()
	},
	"url-query":  url.QueryEscape,
	"url-path":   url.PathEscape,
	"base64":     func(v string) string { return base64.StdEncoding.EncodeToString([]byte(v)) },
	"base64-url": func(v string) string { return base64.RawURLEncoding.EncodeToString([]byte(v)) },
}

func isPrintableASCII(s string) bool {
	return !strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r > 0x7e })
}

func utf16Units(r rune) []rune {
	if r <= 0xFFFF {
		return []rune{r}
	}
	r -= 0x10000
	return []rune{0xD800 + (r>>10)&0x3FF, 0xDC00 + r&0x3FF}
}

// leaks lists the forms of token found in text.
func leaks(text, token string) []string {
	var found []string
	for name, form := range echoed {
		for _, v := range []string{token, "Bearer " + token} {
			f := form(v)
			f = strings.Trim(f, `"`)
			if strings.Contains(strings.ToLower(text), strings.ToLower(f)) {
				found = append(found, name)
				break
			}
		}
	}
	return found
}

// Issue 29 item 2: a backend that echoes the auth header in any of the forms
// above, over gRPC (status message and partial success) and HTTP (error
// body), gets none of it past backend_auth, for tokens that escaping
// changes. The header is sent with a scheme, so both the header value and the
// bare token are echoed.
func TestEchoedTokenRedactedInEveryForm(t *testing.T) {
	for tokenName, token := range hardTokens {
		for formName, form := range echoed {
			t.Run(tokenName+"/"+formName, func(t *testing.T) {
				echo := func(headerValue string) string {
					tok := strings.TrimPrefix(headerValue, "Bearer ")
					return "refused header " + form(headerValue) + " (token " + form(tok) + ")"
				}
				require.NotEmpty(t, leaks(echo("Bearer "+token), token), "the test's own check must see the echo")

				// gRPC: an error status, then a partial success.
				grpcAddr := startEchoingTraceServer(t, echo)
				a, _, _ := startRecorded(t, &Config{Endpoint: grpcAddr, Header: "Authorization", Scheme: "Bearer", Token: configopaque.String(token), Insecure: true})
				c := traceClient(t, a, grpcAddr)
				_, err := c.Export(context.Background(), exportRequest("fail"))
				require.Error(t, err)
				assert.Empty(t, leaks(err.Error(), token), "gRPC error: %s", err)
				if !isPrintableASCII(token) {
					// grpc-go sends no such metadata: the export fails before
					// it leaves, naming the header, not its value.
					assert.Equal(t, codes.Internal, status.Code(err))
					assert.Contains(t, err.Error(), "non-printable ASCII")
				} else {
					assert.Equal(t, codes.InvalidArgument, status.Code(err), "the code is kept")
					assert.Contains(t, err.Error(), redactedText)
					resp, perr := c.Export(context.Background(), exportRequest("partial"))
					require.NoError(t, perr)
					msg := resp.PartialSuccess().ErrorMessage()
					assert.Empty(t, leaks(msg, token), "partial success: %s", msg)
					assert.Contains(t, msg, redactedText)
					assert.Equal(t, int64(1), resp.PartialSuccess().RejectedSpans())
				}

				// HTTP: a protobuf Status body.
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					body, _ := proto.Marshal(&spb.Status{Code: 3, Message: echo(r.Header.Get("Authorization"))})
					w.Header().Set("Content-Type", "application/x-protobuf")
					w.WriteHeader(http.StatusBadRequest)
					_, _ = w.Write(body)
				}))
				t.Cleanup(srv.Close)
				h, _, _ := startRecorded(t, &Config{Endpoint: srv.URL, Header: "Authorization", Scheme: "Bearer", Token: configopaque.String(token), Insecure: true})
				rt, err := h.RoundTripper(http.DefaultTransport)
				require.NoError(t, err)
				req, err := http.NewRequest(http.MethodPost, srv.URL+"/v1/traces", http.NoBody)
				require.NoError(t, err)
				hresp, err := rt.RoundTrip(req)
				require.NoError(t, err)
				raw, err := io.ReadAll(hresp.Body)
				require.NoError(t, err)
				require.NoError(t, hresp.Body.Close())
				var st spb.Status
				require.NoError(t, proto.Unmarshal(raw, &st), "the cleaned body is still a Status")
				assert.Empty(t, leaks(st.Message, token), "HTTP body: %s", st.Message)
				assert.Contains(t, st.Message, "***", "masked in place")
			})
		}
	}
}

// A token with a space and no scheme is one value: no word of it is
// removed on its own.
func TestEchoesNoSchemeKeepsTheTokenWhole(t *testing.T) {
	e := &echoes{}
	e.remember("two words")
	got, changed := e.cleanText("words and two words")
	assert.True(t, changed)
	assert.Equal(t, "words and "+redactedText, got)
}

// At most maxRemembered header values are kept, the newest.
func TestEchoesForgetTheOldest(t *testing.T) {
	e := &echoes{scheme: "Bearer"}
	for i := range maxRemembered + 2 {
		e.remember(fmt.Sprintf("Bearer token-%d", i))
	}
	got, _ := e.cleanText("token-0 token-1 token-2 token-5")
	assert.Equal(t, "token-0 token-1 "+redactedText+" "+redactedText, got)
}

// startEchoingTraceServer is an OTLP/gRPC trace server that answers a request
// whose first span is named "fail" with InvalidArgument, and any other with a
// partial success, both with echo(the authorization header) as the message.
func startEchoingTraceServer(t *testing.T, echo func(string) string) string {
	t.Helper()
	srv := grpc.NewServer()
	ptraceotlp.RegisterGRPCServer(srv, &echoingTraces{echo: echo})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)
	return l.Addr().String()
}

type echoingTraces struct {
	ptraceotlp.UnimplementedGRPCServer
	echo func(string) string
}

func (e *echoingTraces) Export(ctx context.Context, req ptraceotlp.ExportRequest) (ptraceotlp.ExportResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	msg := e.echo(strings.Join(md.Get("authorization"), ","))
	if req.Traces().ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(0).Name() == "fail" {
		return ptraceotlp.NewExportResponse(), status.Error(codes.InvalidArgument, msg)
	}
	resp := ptraceotlp.NewExportResponse()
	resp.PartialSuccess().SetRejectedSpans(1)
	resp.PartialSuccess().SetErrorMessage(msg)
	return resp, nil
}

func traceClient(t *testing.T, a *backendAuth, addr string) ptraceotlp.GRPCClient {
	t.Helper()
	creds, err := a.PerRPCCredentials()
	require.NoError(t, err)
	mw, err := a.GetGRPCClientOptions(context.Background())
	require.NoError(t, err)
	opts := append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithPerRPCCredentials(creds)}, mw...)
	conn, err := grpc.NewClient(addr, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return ptraceotlp.NewGRPCClient(conn)
}

func exportRequest(spanName string) ptraceotlp.ExportRequest {
	td := ptrace.NewTraces()
	td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans().AppendEmpty().SetName(spanName)
	return ptraceotlp.NewExportRequestFromTraces(td)
}
