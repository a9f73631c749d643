package account

import "testing"

func TestAddrKey(t *testing.T) {
	tests := []struct{ peer, want string }{
		{"192.0.2.7:5000", "192.0.2.7"},
		{"192.0.2.7", "192.0.2.7"},
		{"[::ffff:192.0.2.7]:5000", "192.0.2.7"},
		// One host usually holds a whole /64: its addresses share a bucket.
		{"[2001:db8:1:2:aaaa::1]:443", "2001:db8:1:2::/64"},
		{"[2001:db8:1:2:bbbb::9]:443", "2001:db8:1:2::/64"},
		{"[2001:db8:1:3::1]:443", "2001:db8:1:3::/64"},
		{"pipe", "pipe"},
	}
	for _, tt := range tests {
		if got := addrKey(tt.peer); got != tt.want {
			t.Errorf("addrKey(%q) = %q, want %q", tt.peer, got, tt.want)
		}
	}
}
