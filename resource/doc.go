// Package resource is capstan's shared vocabulary: the Key that names an object, the
// Resource that holds its desired or live spec, and the Set that collects them.
//
// Everything here is a plain value. Nothing does I/O, and no cloud SDK type appears: the
// Swarm specs are Docker Engine API types (what the wire carries), the SLB route is
// capstan's own. manifests builds a desired Set, each sink builds a live Set, and
// reconcile pairs the two by Key.
package resource
