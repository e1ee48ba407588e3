"""Local and test tooling: stand-ins for the systems around stagegate. The deployed functions never
import anything from here."""
