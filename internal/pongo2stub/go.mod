module github.com/flosch/pongo2

go 1.21
