// Package version carries the build's version, set by the linker, so that every binary and image
// can say exactly what it is.
package version

// Version is overridden at link time with -X github.com/slipway-dev/slipway/internal/version.Version=….
// It is a var only because the linker can set nothing else.
var Version = "dev"
