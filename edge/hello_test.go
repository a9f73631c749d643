package edge

import (
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	edgev1 "github.com/wagglechat/waggle/gen/go/waggle/edge/v1"
	"github.com/wagglechat/waggle/gen/go/waggle/edge/v1/edgev1connect"
)

// Streams that never say Hello, on both listeners.

// listeners serve a test edge with cfg and return it and its address.
var listeners = []struct {
	name  string
	serve func(t testing.TB, cfg Config) (*testEdge, string)
}{
	{"connect-go", func(t testing.TB, cfg Config) (*testEdge, string) {
		te, srv := newHTTPEdgeConfig(t, cfg)
		return te, strings.TrimPrefix(srv.URL, "http://")
	}},
	{"grpc-go", newGRPCEdgeConfig},
}

// helloless opens n Connect streams on one new TCP connection to addr that
// send nothing, and returns the channel their end codes arrive on.
func helloless(t *testing.T, addr string, n int) <-chan codes.Code {
	t.Helper()
	client := edgev1.NewEdgeServiceClient(grpcClient(t, addr))
	ends := make(chan codes.Code, n)
	for range n {
		stream, err := client.Connect(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			_, err := stream.Recv()
			ends <- status.Code(err)
		}()
	}
	return ends
}

// pendingHellos is how many streams hold a slot of te's hello gate.
func pendingHellos(te *testEdge) int {
	te.hellos.mu.Lock()
	defer te.hellos.mu.Unlock()
	return te.hellos.total
}

// receive returns the next n codes from ends.
func receive(t *testing.T, ends <-chan codes.Code, n int) map[codes.Code]int {
	t.Helper()
	got := map[codes.Code]int{}
	for range n {
		select {
		case c := <-ends:
			got[c]++
		case <-time.After(waitTime):
			t.Fatalf("timed out waiting for streams to end; so far %v", got)
		}
	}
	return got
}

func TestPendingHelloCaps(t *testing.T) {
	tests := []struct {
		name            string
		total, perConn  int
		conns, perDial  int
		refused, admits int
	}{
		{"per connection", 100, 3, 1, 5, 2, 3},
		{"per process", 4, 100, 3, 2, 2, 4},
	}
	for _, l := range listeners {
		for _, tt := range tests {
			t.Run(l.name+"/"+tt.name, func(t *testing.T) {
				cfg := testConfig()
				cfg.HelloTimeout = time.Minute // longer than the test: no slot frees up
				cfg.MaxPendingHellos, cfg.MaxPendingHellosPerConn = tt.total, tt.perConn
				te, addr := l.serve(t, cfg)
				var ends []<-chan codes.Code
				for range tt.conns {
					ends = append(ends, helloless(t, addr, tt.perDial))
				}
				merged := make(chan codes.Code, tt.conns*tt.perDial)
				for _, ch := range ends {
					go func() {
						for c := range ch {
							merged <- c
						}
					}()
				}
				if got := receive(t, merged, tt.refused); got[codes.ResourceExhausted] != tt.refused {
					t.Fatalf("refused streams ended with %v, want %d resource_exhausted", got, tt.refused)
				}
				waitUntil(t, "the admitted streams", func() bool { return pendingHellos(te) == tt.admits })
				select {
				case c := <-merged:
					t.Fatalf("an admitted stream ended with %v", c)
				default:
				}
			})
		}
	}
}

func TestPendingHelloCapFreesOnWelcome(t *testing.T) {
	cfg := testConfig()
	cfg.MaxPendingHellos = 1
	te := newTestEdge(t, cfg)
	for range 3 { // each welcomed session gives the one slot back for the next
		te.connect(t, "tok:u1:d1")
		waitUntil(t, "the slot to be freed", func() bool { return pendingHellos(te) == 0 })
	}
}

func TestHelloDeadlineOnBothListeners(t *testing.T) {
	for _, l := range listeners {
		t.Run(l.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.HelloTimeout = 200 * time.Millisecond
			te, addr := l.serve(t, cfg)
			client := edgev1.NewEdgeServiceClient(grpcClient(t, addr))
			stream, err := client.Connect(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			_, err = stream.Recv()
			if st := status.Convert(err); st.Code() != codes.DeadlineExceeded || st.Message() != "no hello within 200ms" {
				t.Fatalf("stream without hello ended with %v, want deadline_exceeded \"no hello within 200ms\"", err)
			}
			waitUntil(t, "the slot to be freed", func() bool { return pendingHellos(te) == 0 })
		})
	}
}

// The Connect protocol sees the same code.
func TestHelloDeadlineConnectProtocol(t *testing.T) {
	cfg := testConfig()
	cfg.HelloTimeout = 200 * time.Millisecond
	_, srv := newHTTPEdgeConfig(t, cfg)
	stream, err := edgev1connect.NewEdgeServiceClient(h2cClient(), srv.URL).Connect(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(nil); err != nil { // opens the stream, sends no frame
		t.Fatal(err)
	}
	_, err = stream.Receive()
	if connect.CodeOf(err) != connect.CodeDeadlineExceeded {
		t.Fatalf("got %v, want deadline_exceeded", err)
	}
}
