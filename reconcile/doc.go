// Package reconcile turns a desired Set and a live Set into a Plan, and applies a Plan
// through the sinks.
//
// Pairing and comparison are pure functions; only Apply writes. The plan is a value that
// renderers print (text, Markdown, JSON) and Apply consumes, so `capstan diff` shows
// exactly what `capstan apply` would do.
package reconcile
