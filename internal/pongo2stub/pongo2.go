// Package pongo2 stands in for github.com/flosch/pongo2 in buildd-agent's
// build (go.mod replaces the module with this directory).
//
// The only importer is the LXD client library's shared package, for
// shared.RenderTemplate: the LXD daemon renders image templates with it; a
// client, and so buildd-agent, never calls it. Linking the real pongo2 costs
// the agent 5 MB of executable and several MB of resident memory: its package
// init registers its tags and filters and compiles templates, and its
// variable resolver calls reflect.Value.MethodByName with a computed name,
// which makes the Go linker keep every exported method of every reachable
// type in the whole program (its dead-code elimination of methods is off).
// TestLinkerMethodElimination in cmd/buildd-agent fails if anything turns
// that off again.
//
// The API is the part shared.RenderTemplate uses; it fails rather than
// render, should anything ever call it.
package pongo2

import "errors"

// Context is the template context, as in pongo2.
type Context map[string]any

// Template is a parsed template; this stand-in never makes one.
type Template struct{}

var errStub = errors.New("pongo2 templates are not available in buildd-agent (internal/pongo2stub)")

// FromString fails: buildd-agent does not render pongo2 templates.
func FromString(string) (*Template, error) { return nil, errStub }

// Execute fails: buildd-agent does not render pongo2 templates.
func (*Template) Execute(Context) (string, error) { return "", errStub }
