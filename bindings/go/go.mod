// kvcodec's Go binding (cgo over the C library, found with pkg-config).
// No dependencies beyond the standard library. Published, the module would
// take the repository's path; inside this repository it is plain "kvcodec".
module kvcodec

go 1.19
