from postier.auth.demo import demo_password


def test_demo_password_is_letters_and_digits_so_no_command_line_reads_it_as_an_option() -> None:
    passwords = {demo_password() for _ in range(300)}
    assert len(passwords) == 300
    for p in passwords:
        assert len(p) == 16 and p.isascii() and p.isalnum(), p
