// The Go side of the cross-language conformance test (../README.md), over
// the binding in this repository.
module kvcodec-conformance

go 1.19

require kvcodec v0.0.0

replace kvcodec => ../../go
