// The Porcupine side of `make bench`'s comparison (see main.go). The
// bench copies this module into its target folder and points the replace
// directive below at the checkout named by PORCUPINE_DIR; the path here is
// only the default place of that checkout, beside the repository.
module kvtest/porcupinebench

go 1.16

require github.com/anishathalye/porcupine v0.0.0

replace github.com/anishathalye/porcupine => ../../../../porcupine
