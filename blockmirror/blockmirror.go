// Package blockmirror keeps the copy of the block lists that the presence
// service reads, having no access to the store: the contact service writes
// it after each committed block or unblock and rebuilds it with
// ResyncBlockers ([contact.BlockMirror]); presence reads who blocked a
// viewer and whom a user blocked ([presence.BlockLists]).
//
// [Redis] keeps it in Redis for processes that share it; [Memory] keeps it
// in the one process of an embedded deployment, filled at start by
// ResyncBlockers from the store.
package blockmirror

import (
	"github.com/wagglechat/waggle/services/contact"
	"github.com/wagglechat/waggle/services/presence"
)

// Both are written by contacts and read by presence.
var (
	_ contact.BlockMirror = (*Redis)(nil)
	_ presence.BlockLists = (*Redis)(nil)
	_ contact.BlockMirror = (*Memory)(nil)
	_ presence.BlockLists = (*Memory)(nil)
)

// scanPage is how many blocks ScanBlocks hands over at a time.
const scanPage = 1000
