package auth

import (
	"strings"

	"github.com/wagglechat/waggle/gen/go/waggle/account/v1/accountv1connect"
	"github.com/wagglechat/waggle/gen/go/waggle/chat/v1/chatv1connect"
	"github.com/wagglechat/waggle/gen/go/waggle/edge/v1/edgev1connect"
	"github.com/wagglechat/waggle/gen/go/waggle/presence/v1/presencev1connect"
)

// Policy says which credential each procedure needs. Entries are procedure
// names ("/waggle.account.v1.AccountService/Login") or, ending in "/", a whole
// service ("/waggle.chat.v1.DeliveryService/"), so methods added to an
// internal service later are internal too. A procedure in no list needs a
// user: a bearer access token, or the internal credential acting for a user.
type Policy struct {
	// Public procedures need no credentials.
	Public []string
	// SelfAuthenticating procedures check credentials themselves, such as
	// EdgeService.Connect whose first frame carries the access token.
	SelfAuthenticating []string
	// InternalOnly procedures need the internal credential; a user token is
	// refused. Naming a user in the internal headers is optional here.
	InternalOnly []string
}

// DefaultPolicy is Waggle's policy: register, login and refresh are public,
// the edge's session stream authenticates on its Hello frame, and the session
// registry and delivery reports are internal-only.
func DefaultPolicy() Policy {
	return Policy{
		Public: []string{
			accountv1connect.AccountServiceRegisterProcedure,
			accountv1connect.AccountServiceLoginProcedure,
			accountv1connect.AccountServiceRefreshTokenProcedure,
		},
		SelfAuthenticating: []string{
			edgev1connect.EdgeServiceConnectProcedure,
		},
		InternalOnly: []string{
			"/" + presencev1connect.SessionRegistryServiceName + "/",
			"/" + chatv1connect.DeliveryServiceName + "/",
			"/" + chatv1connect.RelationServiceName + "/",
		},
	}
}

// InternalService reports whether every procedure of service (a
// fully-qualified name) is internal-only, so apps have no use for it.
func (p Policy) InternalService(service string) bool {
	return matches(p.InternalOnly, "/"+service+"/")
}

type access int

const (
	accessUser access = iota
	accessPublic
	accessSelf
	accessInternal
)

// access returns what procedure needs. InternalOnly is checked first, so a
// procedure listed twice gets the stricter rule.
func (p Policy) access(procedure string) access {
	switch {
	case matches(p.InternalOnly, procedure):
		return accessInternal
	case matches(p.SelfAuthenticating, procedure):
		return accessSelf
	case matches(p.Public, procedure):
		return accessPublic
	default:
		return accessUser
	}
}

func matches(entries []string, procedure string) bool {
	for _, e := range entries {
		if e == procedure || (strings.HasSuffix(e, "/") && strings.HasPrefix(procedure, e)) {
			return true
		}
	}
	return false
}
