from dropzone.recipes.claims import Claims


def test_a_name_claimed_twice_reports_the_other_claimant() -> None:
    claims = Claims()
    assert claims.claim("a.gguf", "Model") == []
    assert claims.claim("b/c.gguf", "model:latest") == ["a.gguf"]  # same name to the server
    assert claims.claim("d.gguf", "other") == []


def test_releasing_or_renaming_frees_the_name() -> None:
    claims = Claims()
    claims.claim("a.gguf", "m")
    claims.claim("b.gguf", "m")
    claims.release("a.gguf")
    assert claims.claim("b.gguf", "m") == []
    claims.claim("b.gguf", "n")  # the sidecar renamed it
    assert claims.claim("c.gguf", "m") == []
