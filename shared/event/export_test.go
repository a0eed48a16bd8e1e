package event

// Internals the external tests check.
var (
	InSubset           = inSubset
	CheckSubsetDecoded = checkSubsetDecoded
)
