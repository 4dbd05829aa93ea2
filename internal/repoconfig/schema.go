package repoconfig

import _ "embed"

// Schema is the JSON Schema (draft 2020-12) of .slipway.yaml, for editors and for CI checks in
// users' repositories. Parse is the authority; a test keeps the two in step.
//
//go:embed slipway.schema.json
var Schema string
