package notify_test

import (
	"encoding/json"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/wagglechat/waggle/notify"
)

// A webhook receiver: verify the signature over the raw body, then decode
// it, then drop deliveries already handled.
func ExampleVerifySignature() {
	secret := "the shared secret"
	var seen sync.Map // in production: a store with a TTL, shared by replicas
	mux := http.NewServeMux()
	mux.HandleFunc("POST /waggle-push", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, "read error", http.StatusBadRequest)
			return
		}
		if err := notify.VerifySignature(secret, r.Header.Get(notify.SignatureHeader), body,
			time.Now(), notify.DefaultTolerance); err != nil {
			http.Error(w, "bad signature", http.StatusUnauthorized) // final: not retried
			return
		}
		id := r.Header.Get(notify.DeliveryHeader)
		if _, ok := seen.Load(id); ok {
			w.WriteHeader(http.StatusOK) // a retry of one already handled
			return
		}
		var n notify.Notification
		if err := json.Unmarshal(body, &n); err != nil {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		// Send n to APNs/FCM here; answer 503 if that is down, to get a retry.
		seen.Store(id, true)
		w.WriteHeader(http.StatusAccepted)
	})
	_ = http.ListenAndServeTLS(":8443", "cert.pem", "key.pem", mux)
}
