package postgres

// IsBlockedBy is isBlockedBy for the black-box tests.
var IsBlockedBy = isBlockedBy
