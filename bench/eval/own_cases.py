"""Our own multi-step cases: small projects a user asks the agent to change or to write.

Every case lists the files written before the message, the message, a hidden test (a Python
program run in a copy of the final workspace; exit 0 = pass) and a reference solution that
passes it. tests/test_eval_smoke.py checks each case both ways: the starting files fail the
hidden test and the reference passes it, so a case can neither pass by doing nothing nor be
impossible.

Two kinds (`Case.kind`), at least half of them "change":
- "change": the case writes working-looking code first and the message asks to change it: fix
  a bug from a failing test or from a traceback quoted in the message, add a feature or a CLI
  option and its test, refactor across files without breaking the tests, make a failing test
  suite pass;
- "new": write a small module (often with its unittest tests), a CLI or a package, perhaps
  beside data files the case writes.

Each is meant to be within reach of a 1.5B model in a couple of minutes: one to three short
files. A hidden test checks behaviour on inputs of its own (not only the message's example),
and a test file only where the message names it. Where the message asks for tests, the hidden
test also runs them, and for some cases checks that they fail against a broken version of the
code (`tests_fail_with`): tests that pass whatever the code does are not tests.
"""

from __future__ import annotations

from textwrap import dedent

from bench.eval.cases import Case

KINDS = ("change", "new")

# Helpers every hidden test may use: run a script and read its output; run the workspace's
# unittest module with some files replaced (then put back).
PRELUDE = dedent("""\
    import os, shutil, subprocess, sys
    def run(*args, input=None):
        done = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=20, input=input)
        return done.returncode, done.stdout, done.stderr
    def tests_fail_with(replacements, module):
        saved = {path: open(path).read() for path in replacements}
        try:
            for path, content in replacements.items():
                open(path, "w").write(content)
            for cache in [d for d, _, _ in os.walk(".") if d.endswith("__pycache__")]:
                shutil.rmtree(cache, ignore_errors=True)  # a stale .pyc must not stand in for the new file
            code, out, err = run("-B", "-m", "unittest", module)
            return code != 0
        finally:
            for path, content in saved.items():
                open(path, "w").write(content)
    """)


def _case(name: str, kind: str, message: str, files: dict[str, str], reference: dict[str, str], test: str) -> Case:
    assert kind in KINDS, kind
    return Case(name=name, group="own", kind=kind, message=message, files={k: dedent(v) for k, v in files.items()},
                reference={k: dedent(v) for k, v in {**files, **reference}.items()},
                hidden_test=PRELUDE + dedent(test))


OWN_CASES: list[Case] = [
    _case(
        "fix-failing-test", "change",
        "The tests in test_stats.py fail. Find the bug in stats.py, fix it, and run the tests to show they pass.",
        files={
            "stats.py": """\
                def mean(values):
                    \"\"\"The arithmetic mean of a non-empty list of numbers.\"\"\"
                    return sum(values) / (len(values) - 1)
                """,
            "test_stats.py": """\
                import unittest
                from stats import mean

                class MeanTest(unittest.TestCase):
                    def test_mean(self):
                        self.assertEqual(mean([2, 4, 6]), 4)

                    def test_single(self):
                        self.assertEqual(mean([5]), 5)

                if __name__ == "__main__":
                    unittest.main()
                """,
        },
        reference={"stats.py": """\
            def mean(values):
                \"\"\"The arithmetic mean of a non-empty list of numbers.\"\"\"
                return sum(values) / len(values)
            """},
        test="""\
            from stats import mean
            assert mean([1, 2, 3, 4]) == 2.5
            assert mean([7]) == 7
            assert mean([-1, 1]) == 0
            code, out, err = run("-m", "unittest", "test_stats")
            assert code == 0, err
            """,
    ),
    _case(
        "cli-flag", "change",
        "Add a --shout option to greet.py that prints the greeting in upper case, and add a test for "
        "it in test_greet.py (unittest). Run the test.",
        files={"greet.py": """\
            import argparse

            def greeting(name):
                return f"Hello, {name}!"

            def main():
                parser = argparse.ArgumentParser()
                parser.add_argument("name")
                args = parser.parse_args()
                print(greeting(args.name))

            if __name__ == "__main__":
                main()
            """},
        reference={
            "greet.py": """\
                import argparse

                def greeting(name):
                    return f"Hello, {name}!"

                def main():
                    parser = argparse.ArgumentParser()
                    parser.add_argument("name")
                    parser.add_argument("--shout", action="store_true")
                    args = parser.parse_args()
                    text = greeting(args.name)
                    print(text.upper() if args.shout else text)

                if __name__ == "__main__":
                    main()
                """,
            "test_greet.py": """\
                import subprocess, sys, unittest

                class ShoutTest(unittest.TestCase):
                    def test_shout(self):
                        out = subprocess.run([sys.executable, "greet.py", "Ann", "--shout"],
                                             capture_output=True, text=True).stdout
                        self.assertEqual(out.strip(), "HELLO, ANN!")

                if __name__ == "__main__":
                    unittest.main()
                """,
        },
        test="""\
            import os
            code, out, err = run("greet.py", "Bob", "--shout")
            assert code == 0 and out.strip() == "HELLO, BOB!", (code, out, err)
            code, out, err = run("greet.py", "Bob")
            assert code == 0 and out.strip() == "Hello, Bob!", (code, out, err)
            assert os.path.exists("test_greet.py"), "no test_greet.py"
            assert "shout" in open("test_greet.py").read()
            code, out, err = run("-m", "unittest", "test_greet")
            assert code == 0, err
            """,
    ),
    _case(
        "traceback-bug", "change",
        "Running `python3 report.py` crashes:\n\n```\nTraceback (most recent call last):\n"
        "  File \"/project/report.py\", line 9, in <module>\n    print(total_value(load()))\n"
        "  File \"/project/report.py\", line 5, in total_value\n"
        "    return sum(item[\"price\"] * item[\"qty\"] for item in items)\n"
        "KeyError: 'qty'\n```\n\nFix the bug so that it prints the total value of the inventory.",
        files={
            "inventory.json": """\
                [{"name": "pen", "price": 2, "quantity": 10},
                 {"name": "book", "price": 15, "quantity": 3}]
                """,
            "report.py": """\
                import json

                def total_value(items):
                    # price times quantity, summed over the inventory
                    return sum(item["price"] * item["qty"] for item in items)

                def load():
                    return json.load(open("inventory.json"))
                print(total_value(load()))
                """,
        },
        reference={"report.py": """\
            import json

            def total_value(items):
                # price times quantity, summed over the inventory
                return sum(item["price"] * item["quantity"] for item in items)

            def load():
                return json.load(open("inventory.json"))
            print(total_value(load()))
            """},
        test="""\
            import json
            json.dump([{"name": "a", "price": 3, "quantity": 4}, {"name": "b", "price": 1, "quantity": 5}],
                      open("inventory.json", "w"))
            code, out, err = run("report.py")
            assert code == 0, err
            assert out.strip() == "17", out
            """,
    ),
    _case(
        "rename-across-files", "change",
        "Rename the function area_of_circle in shapes.py to circle_area, and update every place that "
        "uses it, so that `python3 app.py` prints the same as before.",
        files={
            "shapes.py": """\
                import math

                def area_of_circle(radius):
                    return math.pi * radius ** 2
                """,
            "app.py": """\
                from shapes import area_of_circle

                for r in (1, 2, 3):
                    print(f"r={r} area={area_of_circle(r):.2f}")
                """,
        },
        reference={
            "shapes.py": """\
                import math

                def circle_area(radius):
                    return math.pi * radius ** 2
                """,
            "app.py": """\
                from shapes import circle_area

                for r in (1, 2, 3):
                    print(f"r={r} area={circle_area(r):.2f}")
                """,
        },
        test="""\
            import shapes
            assert hasattr(shapes, "circle_area"), "no circle_area"
            assert not hasattr(shapes, "area_of_circle"), "area_of_circle is still there"
            assert abs(shapes.circle_area(2) - 12.566370614359172) < 1e-9
            code, out, err = run("app.py")
            assert code == 0, err
            assert out.split() == ["r=1", "area=3.14", "r=2", "area=12.57", "r=3", "area=28.27"], out
            """,
    ),
    _case(
        "write-then-edit", "new",
        "Create settings.py with two lines: DEBUG = True and PORT = 8000. Then change the port to 9000 "
        "with the edit_file tool, and run `python3 -c \"import settings; print(settings.PORT)\"` to check it.",
        files={},
        reference={"settings.py": "DEBUG = True\nPORT = 9000\n"},
        test="""\
            import settings
            assert settings.PORT == 9000, settings.PORT
            assert settings.DEBUG is True
            """,
    ),
    _case(
        "function-and-test", "change",
        "Add a function is_palindrome(text) to textutils.py that ignores case, spaces and punctuation, "
        "and write test_textutils.py with unittest tests for it. Run the tests.",
        files={"textutils.py": """\
            def shout(text):
                return text.upper() + "!"
            """},
        reference={
            "textutils.py": """\
                def shout(text):
                    return text.upper() + "!"

                def is_palindrome(text):
                    letters = [c.lower() for c in text if c.isalnum()]
                    return letters == letters[::-1]
                """,
            "test_textutils.py": """\
                import unittest
                from textutils import is_palindrome

                class PalindromeTest(unittest.TestCase):
                    def test_examples(self):
                        self.assertTrue(is_palindrome("A man, a plan, a canal: Panama"))
                        self.assertFalse(is_palindrome("hello"))

                if __name__ == "__main__":
                    unittest.main()
                """,
        },
        test="""\
            import os
            from textutils import is_palindrome, shout
            assert shout("hi") == "HI!"
            assert is_palindrome("Never odd or even")
            assert is_palindrome("Was it a car, or a cat I saw?")
            assert not is_palindrome("palindrome")
            assert is_palindrome("")
            assert os.path.exists("test_textutils.py")
            code, out, err = run("-m", "unittest", "test_textutils")
            assert code == 0, err
            """,
    ),
    _case(
        "off-by-one", "change",
        "countdown.py should print 3, 2, 1 and then liftoff, each on its own line, but the 1 is missing. "
        "Fix it and run it.",
        files={"countdown.py": """\
            def countdown(n):
                for i in range(n, 1, -1):
                    print(i)
                print("liftoff")

            if __name__ == "__main__":
                countdown(3)
            """},
        reference={"countdown.py": """\
            def countdown(n):
                for i in range(n, 0, -1):
                    print(i)
                print("liftoff")

            if __name__ == "__main__":
                countdown(3)
            """},
        test="""\
            code, out, err = run("countdown.py")
            assert code == 0, err
            assert out.split() == ["3", "2", "1", "liftoff"], out
            code, out, err = run("-c", "import countdown; countdown.countdown(2)")
            assert out.split() == ["2", "1", "liftoff"], out
            """,
    ),
    _case(
        "sum-and-max", "new",
        "numbers.txt has one integer per line. Write stats_cli.py that reads numbers.txt and prints "
        "`sum=<S> max=<M>`. Run it.",
        files={"numbers.txt": "4\n-2\n17\n5\n"},
        reference={"stats_cli.py": """\
            values = [int(line) for line in open("numbers.txt") if line.strip()]
            print(f"sum={sum(values)} max={max(values)}")
            """},
        test="""\
            open("numbers.txt", "w").write("10\\n-30\\n7\\n\\n")
            code, out, err = run("stats_cli.py")
            assert code == 0, err
            assert out.strip() == "sum=-13 max=10", out
            """,
    ),
    _case(
        "class-from-tests", "new",
        "Make the tests in test_stack.py pass by writing stack.py. Run them.",
        files={"test_stack.py": """\
            import unittest
            from stack import Stack

            class StackTest(unittest.TestCase):
                def test_push_pop(self):
                    s = Stack()
                    s.push(1)
                    s.push(2)
                    self.assertEqual(s.pop(), 2)
                    self.assertEqual(s.peek(), 1)
                    self.assertEqual(len(s), 1)

                def test_empty(self):
                    s = Stack()
                    self.assertTrue(s.is_empty())
                    with self.assertRaises(IndexError):
                        s.pop()

            if __name__ == "__main__":
                unittest.main()
            """},
        reference={"stack.py": """\
            class Stack:
                def __init__(self):
                    self._items = []

                def push(self, item):
                    self._items.append(item)

                def pop(self):
                    if not self._items:
                        raise IndexError("pop from an empty stack")
                    return self._items.pop()

                def peek(self):
                    if not self._items:
                        raise IndexError("peek at an empty stack")
                    return self._items[-1]

                def is_empty(self):
                    return not self._items

                def __len__(self):
                    return len(self._items)
            """},
        test="""\
            from stack import Stack
            s = Stack()
            for i in range(5):
                s.push(i)
            assert len(s) == 5 and s.peek() == 4 and s.pop() == 4 and len(s) == 4
            while not s.is_empty():
                s.pop()
            try:
                s.pop()
            except IndexError:
                pass
            else:
                raise AssertionError("pop on empty did not raise IndexError")
            code, out, err = run("-m", "unittest", "test_stack")
            assert code == 0, err
            """,
    ),
    _case(
        "csv-report", "new",
        "sales.csv has columns region,amount. Write report.py that prints the total amount per region, "
        "one line `region: total` per region, sorted by region name. Run it.",
        files={"sales.csv": "region,amount\nnorth,10\nsouth,5\nnorth,7\neast,3\n"},
        reference={"report.py": """\
            import csv
            totals = {}
            for row in csv.DictReader(open("sales.csv")):
                totals[row["region"]] = totals.get(row["region"], 0) + int(row["amount"])
            for region in sorted(totals):
                print(f"{region}: {totals[region]}")
            """},
        test="""\
            open("sales.csv", "w").write("region,amount\\nwest,4\\neast,1\\nwest,6\\ncentral,2\\n")
            code, out, err = run("report.py")
            assert code == 0, err
            assert [l.strip() for l in out.strip().splitlines()] == ["central: 2", "east: 1", "west: 10"], out
            """,
    ),
    _case(
        "validate-input", "change",
        "In temperature.py, make c_to_f raise ValueError for temperatures below absolute zero "
        "(-273.15 C), and add a unittest for that in test_temperature.py. Run the tests.",
        files={
            "temperature.py": """\
                def c_to_f(celsius):
                    return celsius * 9 / 5 + 32
                """,
            "test_temperature.py": """\
                import unittest
                from temperature import c_to_f

                class ConvertTest(unittest.TestCase):
                    def test_boiling(self):
                        self.assertEqual(c_to_f(100), 212)

                if __name__ == "__main__":
                    unittest.main()
                """,
        },
        reference={
            "temperature.py": """\
                def c_to_f(celsius):
                    if celsius < -273.15:
                        raise ValueError("below absolute zero")
                    return celsius * 9 / 5 + 32
                """,
            "test_temperature.py": """\
                import unittest
                from temperature import c_to_f

                class ConvertTest(unittest.TestCase):
                    def test_boiling(self):
                        self.assertEqual(c_to_f(100), 212)

                    def test_below_absolute_zero(self):
                        with self.assertRaises(ValueError):
                            c_to_f(-300)

                if __name__ == "__main__":
                    unittest.main()
                """,
        },
        test="""\
            from temperature import c_to_f
            assert c_to_f(0) == 32 and c_to_f(-273.15) == -459.66999999999996
            try:
                c_to_f(-274)
            except ValueError:
                pass
            else:
                raise AssertionError("no ValueError below absolute zero")
            src = open("test_temperature.py").read()
            assert "ValueError" in src, "the test does not check ValueError"
            code, out, err = run("-m", "unittest", "test_temperature")
            assert code == 0, err
            """,
    ),
    _case(
        "package-import", "change",
        "`python3 -m shop.main` fails with an ImportError. Find out why and fix it, then run it.",
        files={
            "shop/__init__.py": "",
            "shop/pricing.py": """\
                def with_tax(amount, rate=0.2):
                    return round(amount * (1 + rate), 2)
                """,
            "shop/main.py": """\
                from shop.prices import with_tax

                if __name__ == "__main__":
                    print(with_tax(10))
                """,
        },
        reference={"shop/main.py": """\
            from shop.pricing import with_tax

            if __name__ == "__main__":
                print(with_tax(10))
            """},
        test="""\
            code, out, err = run("-m", "shop.main")
            assert code == 0, err
            assert out.strip() == "12.0", out
            from shop.pricing import with_tax
            assert with_tax(5, 0.1) == 5.5
            """,
    ),
    # ---- more changes to existing code ----------------------------------------------------------
    _case(
        "fix-word-counts", "change",
        "Some tests in test_wordfreq.py fail. Fix wordfreq.py (not the tests) and run the tests.",
        files={
            "wordfreq.py": """\
                import re


                def word_counts(text):
                    \"\"\"How often each word occurs in text, ignoring case and punctuation.\"\"\"
                    counts = {}
                    for word in re.findall(r"[a-z']+", text):
                        counts[word] = counts.get(word, 0) + 1
                    return counts


                def top_words(text, n):
                    \"\"\"The n most frequent words as (word, count) pairs, most frequent first, ties alphabetical.\"\"\"
                    counts = word_counts(text)
                    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:n]
                """,
            "test_wordfreq.py": """\
                import unittest

                from wordfreq import top_words, word_counts


                class WordCountsTest(unittest.TestCase):
                    def test_ignores_case(self):
                        self.assertEqual(word_counts("The cat and the hat"), {"the": 2, "cat": 1, "and": 1, "hat": 1})

                    def test_ignores_punctuation(self):
                        self.assertEqual(word_counts("Hi! hi, HI."), {"hi": 3})

                    def test_top_words(self):
                        self.assertEqual(top_words("b a b c a b", 2), [("b", 3), ("a", 2)])


                if __name__ == "__main__":
                    unittest.main()
                """,
        },
        reference={"wordfreq.py": """\
            import re


            def word_counts(text):
                \"\"\"How often each word occurs in text, ignoring case and punctuation.\"\"\"
                counts = {}
                for word in re.findall(r"[a-z']+", text.lower()):
                    counts[word] = counts.get(word, 0) + 1
                return counts


            def top_words(text, n):
                \"\"\"The n most frequent words as (word, count) pairs, most frequent first, ties alphabetical.\"\"\"
                counts = word_counts(text)
                return sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:n]
            """},
        test="""\
            from wordfreq import top_words, word_counts
            assert word_counts("Dog dog DOG, cat.") == {"dog": 3, "cat": 1}, word_counts("Dog dog DOG, cat.")
            assert word_counts("") == {}
            assert top_words("x Y y z Z z", 2) == [("z", 3), ("y", 2)], top_words("x Y y z Z z", 2)
            assert top_words("Beta alpha", 5) == [("alpha", 1), ("beta", 1)]
            src = open("test_wordfreq.py").read()
            assert all(name in src for name in ("test_ignores_case", "test_ignores_punctuation", "test_top_words")), \\
                "a test was removed"
            code, out, err = run("-m", "unittest", "test_wordfreq")
            assert code == 0, err
            """,
    ),
    _case(
        "date-format-traceback", "change",
        "`python3 due.py 2024-02-20 2024-03-05` crashes:\n\n```\nTraceback (most recent call last):\n"
        "  File \"/project/due.py\", line 15, in <module>\n    print(days_between(sys.argv[1], sys.argv[2]))\n"
        "  File \"/project/due.py\", line 11, in days_between\n    return (parse_day(end) - parse_day(start)).days\n"
        "  File \"/project/due.py\", line 6, in parse_day\n    return datetime.strptime(text, \"%d.%m.%Y\").date()\n"
        "  File \"/usr/lib/python3.11/_strptime.py\", line 349, in _strptime\n"
        "    raise ValueError(\"time data %r does not match format %r\" %\n"
        "ValueError: time data '2024-03-05' does not match format '%d.%m.%Y'\n```\n\n"
        "Our dates are always written like 2024-02-20. Fix it so that it prints the number of days between "
        "the two dates, and run it.",
        files={"due.py": """\
            import sys
            from datetime import datetime


            def parse_day(text):
                return datetime.strptime(text, "%d.%m.%Y").date()


            def days_between(start, end):
                \"\"\"Whole days from start to end, both written like 2024-02-20.\"\"\"
                return (parse_day(end) - parse_day(start)).days


            if __name__ == "__main__":
                print(days_between(sys.argv[1], sys.argv[2]))
            """},
        reference={"due.py": """\
            import sys
            from datetime import datetime


            def parse_day(text):
                return datetime.strptime(text, "%Y-%m-%d").date()


            def days_between(start, end):
                \"\"\"Whole days from start to end, both written like 2024-02-20.\"\"\"
                return (parse_day(end) - parse_day(start)).days


            if __name__ == "__main__":
                print(days_between(sys.argv[1], sys.argv[2]))
            """},
        test="""\
            from due import days_between
            assert days_between("2023-12-31", "2024-01-01") == 1
            assert days_between("2024-03-01", "2024-02-28") == -2  # 2024 is a leap year
            assert days_between("2023-03-01", "2023-02-28") == -1
            code, out, err = run("due.py", "2024-02-20", "2024-03-05")
            assert code == 0, err
            assert out.strip() == "14", out
            code, out, err = run("due.py", "2000-01-01", "2001-01-01")
            assert code == 0 and out.strip() == "366", (out, err)
            """,
    ),
    _case(
        "extract-helper-module", "change",
        "Move the slugify function out of blog.py into a new module text_utils.py, and make blog.py and "
        "feed.py import it from there; blog.py should no longer define it. The tests in test_blog.py must "
        "still pass: run them.",
        files={
            "blog.py": """\
                import re


                def slugify(title):
                    \"\"\"A URL-friendly slug: lower case, words joined by '-'.\"\"\"
                    return "-".join(re.findall(r"[a-z0-9]+", title.lower()))


                def post_url(title):
                    return "/posts/" + slugify(title)
                """,
            "feed.py": """\
                from blog import slugify


                def feed_ids(titles):
                    return [slugify(title) for title in titles]
                """,
            "test_blog.py": """\
                import unittest

                from blog import post_url
                from feed import feed_ids


                class BlogTest(unittest.TestCase):
                    def test_post_url(self):
                        self.assertEqual(post_url("Hello, World!"), "/posts/hello-world")

                    def test_feed_ids(self):
                        self.assertEqual(feed_ids(["A b", "C"]), ["a-b", "c"])


                if __name__ == "__main__":
                    unittest.main()
                """,
        },
        reference={
            "text_utils.py": """\
                import re


                def slugify(title):
                    \"\"\"A URL-friendly slug: lower case, words joined by '-'.\"\"\"
                    return "-".join(re.findall(r"[a-z0-9]+", title.lower()))
                """,
            "blog.py": """\
                from text_utils import slugify


                def post_url(title):
                    return "/posts/" + slugify(title)
                """,
            "feed.py": """\
                from text_utils import slugify


                def feed_ids(titles):
                    return [slugify(title) for title in titles]
                """,
        },
        test="""\
            import text_utils
            assert text_utils.slugify("  Rust & Python 3 ") == "rust-python-3"
            assert "def slugify" not in open("blog.py").read(), "blog.py still defines slugify"
            assert "def slugify" not in open("feed.py").read(), "feed.py defines slugify"
            assert "text_utils" in open("feed.py").read(), "feed.py does not use text_utils"
            from blog import post_url
            from feed import feed_ids
            assert post_url("Ten Tips, Part 2") == "/posts/ten-tips-part-2"
            assert feed_ids(["X y", "Z!"]) == ["x-y", "z"]
            code, out, err = run("-m", "unittest", "test_blog")
            assert code == 0, err
            """,
    ),
    _case(
        "fix-inventory-suite", "change",
        "Make all the tests in test_inventory.py pass. Change inventory.py, not the tests, and run them.",
        files={
            "inventory.py": """\
                class Inventory:
                    def __init__(self):
                        self.items = {}

                    def add(self, name, qty=1):
                        self.items[name] = qty

                    def remove(self, name, qty=1):
                        \"\"\"Take qty away; ValueError if there are not that many (nothing changes then).\"\"\"
                        self.items[name] -= qty

                    def count(self, name):
                        return self.items[name]
                """,
            "test_inventory.py": """\
                import unittest

                from inventory import Inventory


                class InventoryTest(unittest.TestCase):
                    def test_add_adds_up(self):
                        inv = Inventory()
                        inv.add("apple", 3)
                        inv.add("apple", 2)
                        self.assertEqual(inv.count("apple"), 5)

                    def test_unknown_item_counts_zero(self):
                        self.assertEqual(Inventory().count("pear"), 0)

                    def test_remove(self):
                        inv = Inventory()
                        inv.add("apple", 3)
                        inv.remove("apple", 2)
                        self.assertEqual(inv.count("apple"), 1)

                    def test_remove_too_many(self):
                        inv = Inventory()
                        inv.add("apple", 1)
                        with self.assertRaises(ValueError):
                            inv.remove("apple", 2)
                        self.assertEqual(inv.count("apple"), 1)


                if __name__ == "__main__":
                    unittest.main()
                """,
        },
        reference={"inventory.py": """\
            class Inventory:
                def __init__(self):
                    self.items = {}

                def add(self, name, qty=1):
                    self.items[name] = self.items.get(name, 0) + qty

                def remove(self, name, qty=1):
                    \"\"\"Take qty away; ValueError if there are not that many (nothing changes then).\"\"\"
                    if self.count(name) < qty:
                        raise ValueError(f"only {self.count(name)} {name} left")
                    self.items[name] -= qty

                def count(self, name):
                    return self.items.get(name, 0)
            """},
        test="""\
            from inventory import Inventory
            inv = Inventory()
            for qty in (1, 4, 10):
                inv.add("bolt", qty)
            inv.add("nut")
            assert inv.count("bolt") == 15 and inv.count("nut") == 1 and inv.count("gear") == 0
            inv.remove("bolt", 15)
            assert inv.count("bolt") == 0
            for name, qty in (("bolt", 1), ("nut", 2)):
                try:
                    inv.remove(name, qty)
                except ValueError:
                    pass
                else:
                    raise AssertionError(f"removing {qty} {name} did not raise ValueError")
            assert inv.count("nut") == 1 and inv.count("gear") == 0
            src = open("test_inventory.py").read()
            assert src.count("def test_") >= 4, "a test was removed"
            code, out, err = run("-m", "unittest", "test_inventory")
            assert code == 0, err
            """,
    ),
    _case(
        "roman-add-inverse", "change",
        "roman.py has to_roman(n). Add from_roman(text) that turns a Roman numeral back into an int "
        "(from_roman('XIV') == 14), and write unittest tests for both functions in test_roman.py. Run the tests.",
        files={"roman.py": """\
            NUMERALS = [(1000, "M"), (900, "CM"), (500, "D"), (400, "CD"), (100, "C"), (90, "XC"),
                        (50, "L"), (40, "XL"), (10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I")]


            def to_roman(n):
                \"\"\"The Roman numeral for 1 <= n <= 3999.\"\"\"
                out = []
                for value, letters in NUMERALS:
                    while n >= value:
                        out.append(letters)
                        n -= value
                return "".join(out)
            """},
        reference={
            "roman.py": """\
                NUMERALS = [(1000, "M"), (900, "CM"), (500, "D"), (400, "CD"), (100, "C"), (90, "XC"),
                            (50, "L"), (40, "XL"), (10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I")]


                def to_roman(n):
                    \"\"\"The Roman numeral for 1 <= n <= 3999.\"\"\"
                    out = []
                    for value, letters in NUMERALS:
                        while n >= value:
                            out.append(letters)
                            n -= value
                    return "".join(out)


                def from_roman(text):
                    \"\"\"The int a Roman numeral stands for.\"\"\"
                    n, i = 0, 0
                    for value, letters in NUMERALS:
                        while text.startswith(letters, i):
                            n += value
                            i += len(letters)
                    return n
                """,
            "test_roman.py": """\
                import unittest

                from roman import from_roman, to_roman


                class RomanTest(unittest.TestCase):
                    def test_to_roman(self):
                        self.assertEqual(to_roman(1994), "MCMXCIV")

                    def test_from_roman(self):
                        self.assertEqual(from_roman("XIV"), 14)
                        self.assertEqual(from_roman("MMXXIV"), 2024)

                    def test_round_trip(self):
                        for n in range(1, 400):
                            self.assertEqual(from_roman(to_roman(n)), n)


                if __name__ == "__main__":
                    unittest.main()
                """,
        },
        test="""\
            from roman import from_roman, to_roman
            assert to_roman(3888) == "MMMDCCCLXXXVIII"
            assert from_roman("MCMXCIV") == 1994 and from_roman("XL") == 40 and from_roman("I") == 1
            bad = [n for n in range(1, 4000) if from_roman(to_roman(n)) != n]
            assert not bad, f"from_roman(to_roman(n)) != n for n in {bad[:5]}"
            assert os.path.exists("test_roman.py"), "no test_roman.py"
            code, out, err = run("-m", "unittest", "test_roman")
            assert code == 0, err
            good = open("roman.py").read()
            assert tests_fail_with({"roman.py": good + "\\n\\ndef from_roman(text):\\n    return 0\\n"}, "test_roman"), \\
                "test_roman.py passes even when from_roman always returns 0"
            """,
    ),
    _case(
        "grades-empty-traceback", "change",
        "`python3 grades.py` crashes:\n\n```\nTraceback (most recent call last):\n"
        "  File \"/project/grades.py\", line 18, in <module>\n    print(report(json.load(f)))\n"
        "  File \"/project/grades.py\", line 12, in report\n    lines.append(f\"{name}: {average(scores):.1f}\")\n"
        "  File \"/project/grades.py\", line 5, in average\n    return sum(scores) / len(scores)\n"
        "ZeroDivisionError: division by zero\n```\n\n"
        "A student with no scores yet should get the line `name: no scores` instead. Fix it and run it.",
        files={
            "grades.py": """\
                import json


                def average(scores):
                    return sum(scores) / len(scores)


                def report(students):
                    \"\"\"One line per student, `name: average`, the average with one decimal.\"\"\"
                    lines = []
                    for name, scores in students.items():
                        lines.append(f"{name}: {average(scores):.1f}")
                    return "\\n".join(lines)


                if __name__ == "__main__":
                    with open("students.json") as f:
                        print(report(json.load(f)))
                """,
            "students.json": '{"ana": [90, 85], "ben": [], "cy": [70]}\n',
        },
        reference={"grades.py": """\
            import json


            def average(scores):
                return sum(scores) / len(scores)


            def report(students):
                \"\"\"One line per student, `name: average`, the average with one decimal.\"\"\"
                lines = []
                for name, scores in students.items():
                    if scores:
                        lines.append(f"{name}: {average(scores):.1f}")
                    else:
                        lines.append(f"{name}: no scores")
                return "\\n".join(lines)


            if __name__ == "__main__":
                with open("students.json") as f:
                    print(report(json.load(f)))
            """},
        test="""\
            import json
            from grades import report
            assert report({"a": [1, 2], "b": []}) == "a: 1.5\\nb: no scores", repr(report({"a": [1, 2], "b": []}))
            assert report({"z": [10]}) == "z: 10.0"
            json.dump({"dee": [], "eve": [3, 4, 4]}, open("students.json", "w"))
            code, out, err = run("grades.py")
            assert code == 0, err
            assert out.strip().splitlines() == ["dee: no scores", "eve: 3.7"], out
            """,
    ),
    _case(
        "config-parse-equals", "change",
        "`python3 settings_parser.py app.conf` fails:\n\n```\nTraceback (most recent call last):\n"
        "  File \"/project/settings_parser.py\", line 18, in <module>\n"
        "    for key, value in sorted(parse_settings(f.read()).items()):\n"
        "  File \"/project/settings_parser.py\", line 11, in parse_settings\n    key, value = line.split(\"=\")\n"
        "ValueError: too many values to unpack (expected 2)\n```\n\n"
        "A value may contain '=' itself (like the database URL). Fix the parser and run it on app.conf.",
        files={
            "settings_parser.py": """\
                import sys


                def parse_settings(text):
                    \"\"\"Settings from `key = value` lines; blank lines and lines starting with # are skipped.\"\"\"
                    settings = {}
                    for line in text.splitlines():
                        line = line.strip()
                        if not line or line.startswith("#"):
                            continue
                        key, value = line.split("=")
                        settings[key.strip()] = value.strip()
                    return settings


                if __name__ == "__main__":
                    with open(sys.argv[1]) as f:
                        for key, value in sorted(parse_settings(f.read()).items()):
                            print(f"{key}={value}")
                """,
            "app.conf": "# app settings\nname = demo\ndatabase_url = postgres://app@db/main?sslmode=require\n\n"
                        "port = 5432\n",
        },
        reference={"settings_parser.py": """\
            import sys


            def parse_settings(text):
                \"\"\"Settings from `key = value` lines; blank lines and lines starting with # are skipped.\"\"\"
                settings = {}
                for line in text.splitlines():
                    line = line.strip()
                    if not line or line.startswith("#"):
                        continue
                    key, value = line.split("=", 1)
                    settings[key.strip()] = value.strip()
                return settings


            if __name__ == "__main__":
                with open(sys.argv[1]) as f:
                    for key, value in sorted(parse_settings(f.read()).items()):
                        print(f"{key}={value}")
            """},
        test="""\
            from settings_parser import parse_settings
            got = parse_settings("a = 1\\n# b = 2\\n\\nexpr=x=y==z\\n  c =  spaced out  \\n")
            assert got == {"a": "1", "expr": "x=y==z", "c": "spaced out"}, got
            open("other.conf", "w").write("token = abc=\\nmode = fast\\n")
            code, out, err = run("settings_parser.py", "other.conf")
            assert code == 0, err
            assert out.strip().splitlines() == ["mode=fast", "token=abc="], out
            code, out, err = run("settings_parser.py", "app.conf")
            assert code == 0 and "database_url=postgres://app@db/main?sslmode=require" in out, (out, err)
            """,
    ),
    _case(
        "tax-rate-refactor", "change",
        "orders.py and invoice.py both hard-code the 20% tax. Create tax.py with TAX_RATE = 0.2 and a function "
        "add_tax(amount) that returns the amount with tax, rounded to cents; use it in both files, and keep "
        "test_shop.py passing (run it).",
        files={
            "orders.py": """\
                def order_total(prices):
                    \"\"\"The order's total with 20% tax, rounded to cents.\"\"\"
                    return round(sum(prices) * 1.2, 2)
                """,
            "invoice.py": """\
                def invoice_line(name, price, qty):
                    gross = round(price * qty * 1.2, 2)
                    return f"{name} x{qty}: {gross:.2f}"
                """,
            "test_shop.py": """\
                import unittest

                from invoice import invoice_line
                from orders import order_total


                class ShopTest(unittest.TestCase):
                    def test_order_total(self):
                        self.assertEqual(order_total([10, 5]), 18.0)

                    def test_invoice_line(self):
                        self.assertEqual(invoice_line("pen", 1.5, 2), "pen x2: 3.60")


                if __name__ == "__main__":
                    unittest.main()
                """,
        },
        reference={
            "tax.py": """\
                TAX_RATE = 0.2


                def add_tax(amount):
                    return round(amount * (1 + TAX_RATE), 2)
                """,
            "orders.py": """\
                from tax import add_tax


                def order_total(prices):
                    \"\"\"The order's total with tax, rounded to cents.\"\"\"
                    return add_tax(sum(prices))
                """,
            "invoice.py": """\
                from tax import add_tax


                def invoice_line(name, price, qty):
                    gross = add_tax(price * qty)
                    return f"{name} x{qty}: {gross:.2f}"
                """,
        },
        test="""\
            import re
            from tax import add_tax
            assert add_tax(10) == 12.0 and add_tax(0.1) == 0.12
            code, out, err = run("-m", "unittest", "test_shop")
            assert code == 0, err
            # One place decides the rate: change it there, and both files follow.
            src = open("tax.py").read()
            assert re.search(r"TAX_RATE\\b[^=\\n]*=\\s*0?\\.20*\\b", src), "no TAX_RATE = 0.2 in tax.py"
            open("tax.py", "w").write(re.sub(r"TAX_RATE\\b[^=\\n]*=\\s*0?\\.20*\\b", "TAX_RATE = 0.5", src))
            code, out, err = run("-B", "-c", "from orders import order_total; from invoice import invoice_line; "
                                 "print(order_total([10, 20])); print(invoice_line('pen', 2, 3))")
            assert code == 0, err
            assert out.split("\\n")[:2] == ["45.0", "pen x3: 9.00"], out
            """,
    ),
    _case(
        "vector-add-methods", "change",
        "Add two methods to the Vector class in vector.py: dot(other), the dot product, and scaled(k), a new "
        "Vector with both coordinates multiplied by k (the original stays unchanged). Add tests for them to "
        "test_vector.py and run the tests.",
        files={
            "vector.py": """\
                class Vector:
                    def __init__(self, x, y):
                        self.x = x
                        self.y = y

                    def __add__(self, other):
                        return Vector(self.x + other.x, self.y + other.y)

                    def __eq__(self, other):
                        return (self.x, self.y) == (other.x, other.y)

                    def __repr__(self):
                        return f"Vector({self.x}, {self.y})"
                """,
            "test_vector.py": """\
                import unittest

                from vector import Vector


                class VectorTest(unittest.TestCase):
                    def test_add(self):
                        self.assertEqual(Vector(1, 2) + Vector(3, 4), Vector(4, 6))


                if __name__ == "__main__":
                    unittest.main()
                """,
        },
        reference={
            "vector.py": """\
                class Vector:
                    def __init__(self, x, y):
                        self.x = x
                        self.y = y

                    def __add__(self, other):
                        return Vector(self.x + other.x, self.y + other.y)

                    def __eq__(self, other):
                        return (self.x, self.y) == (other.x, other.y)

                    def __repr__(self):
                        return f"Vector({self.x}, {self.y})"

                    def dot(self, other):
                        return self.x * other.x + self.y * other.y

                    def scaled(self, k):
                        return Vector(self.x * k, self.y * k)
                """,
            "test_vector.py": """\
                import unittest

                from vector import Vector


                class VectorTest(unittest.TestCase):
                    def test_add(self):
                        self.assertEqual(Vector(1, 2) + Vector(3, 4), Vector(4, 6))

                    def test_dot(self):
                        self.assertEqual(Vector(1, 2).dot(Vector(3, 4)), 11)

                    def test_scaled(self):
                        v = Vector(1, -2)
                        self.assertEqual(v.scaled(3), Vector(3, -6))
                        self.assertEqual(v, Vector(1, -2))


                if __name__ == "__main__":
                    unittest.main()
                """,
        },
        test="""\
            from vector import Vector
            assert Vector(2, -1).dot(Vector(5, 7)) == 3 and Vector(0, 0).dot(Vector(9, 9)) == 0
            v = Vector(-1, 4)
            w = v.scaled(-2)
            assert w == Vector(2, -8), w
            assert v == Vector(-1, 4), "scaled changed the original"
            assert Vector(1, 2) + Vector(3, 4) == Vector(4, 6)
            src = open("test_vector.py").read()
            assert "dot" in src and "scaled" in src, "test_vector.py tests neither dot nor scaled"
            code, out, err = run("-m", "unittest", "test_vector")
            assert code == 0, err
            good = open("vector.py").read()
            broken = good + "\\n\\nVector.dot = lambda self, other: 0\\nVector.scaled = lambda self, k: self\\n"
            assert tests_fail_with({"vector.py": broken}, "test_vector"), \\
                "test_vector.py passes even when dot returns 0 and scaled returns the vector itself"
            """,
    ),
    _case(
        "binary-search-bug", "change",
        "Some tests in test_search.py fail. Fix the bug in search.py and run the tests.",
        files={
            "search.py": """\
                def find(items, target):
                    \"\"\"The index of target in the sorted list items, or -1 if it is not there.\"\"\"
                    lo, hi = 0, len(items) - 2
                    while lo <= hi:
                        mid = (lo + hi) // 2
                        if items[mid] == target:
                            return mid
                        if items[mid] < target:
                            lo = mid + 1
                        else:
                            hi = mid - 1
                    return -1
                """,
            "test_search.py": """\
                import unittest

                from search import find


                class FindTest(unittest.TestCase):
                    def test_first_and_middle(self):
                        self.assertEqual(find([1, 3, 5, 7], 1), 0)
                        self.assertEqual(find([1, 3, 5, 7], 5), 2)

                    def test_last(self):
                        self.assertEqual(find([1, 3, 5, 7], 7), 3)

                    def test_single(self):
                        self.assertEqual(find([4], 4), 0)

                    def test_missing(self):
                        self.assertEqual(find([1, 3, 5, 7], 4), -1)
                        self.assertEqual(find([], 4), -1)


                if __name__ == "__main__":
                    unittest.main()
                """,
        },
        reference={"search.py": """\
            def find(items, target):
                \"\"\"The index of target in the sorted list items, or -1 if it is not there.\"\"\"
                lo, hi = 0, len(items) - 1
                while lo <= hi:
                    mid = (lo + hi) // 2
                    if items[mid] == target:
                        return mid
                    if items[mid] < target:
                        lo = mid + 1
                    else:
                        hi = mid - 1
                return -1
            """},
        test="""\
            import random
            from search import find
            rng = random.Random(7)
            for size in range(0, 40):
                items = sorted(rng.sample(range(-100, 100), size))
                for index, value in enumerate(items):
                    assert find(items, value) == index, (items, value, find(items, value))
                for missing in (-101, 100, 0.5):
                    assert find(items, missing) == -1, (items, missing)
            code, out, err = run("-m", "unittest", "test_search")
            assert code == 0, err
            """,
    ),
    _case(
        "leap-year-suite", "change",
        "The tests in test_calendar_utils.py fail. Make them pass by fixing calendar_utils.py, then run them.",
        files={
            "calendar_utils.py": """\
                def is_leap_year(year):
                    return year % 4 == 0


                def days_in_month(year, month):
                    if month == 2:
                        return 29 if is_leap_year(year) else 28
                    if month in (4, 6, 9, 11):
                        return 30
                    return 31


                def days_in_year(year):
                    return sum(days_in_month(year, month) for month in range(1, 12))
                """,
            "test_calendar_utils.py": """\
                import unittest

                from calendar_utils import days_in_month, days_in_year, is_leap_year


                class LeapYearTest(unittest.TestCase):
                    def test_leap_years(self):
                        self.assertTrue(is_leap_year(2024))
                        self.assertTrue(is_leap_year(2000))
                        self.assertFalse(is_leap_year(1900))
                        self.assertFalse(is_leap_year(2023))

                    def test_february(self):
                        self.assertEqual(days_in_month(1900, 2), 28)
                        self.assertEqual(days_in_month(2024, 2), 29)

                    def test_days_in_year(self):
                        self.assertEqual(days_in_year(2023), 365)
                        self.assertEqual(days_in_year(2024), 366)


                if __name__ == "__main__":
                    unittest.main()
                """,
        },
        reference={"calendar_utils.py": """\
            def is_leap_year(year):
                return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


            def days_in_month(year, month):
                if month == 2:
                    return 29 if is_leap_year(year) else 28
                if month in (4, 6, 9, 11):
                    return 30
                return 31


            def days_in_year(year):
                return sum(days_in_month(year, month) for month in range(1, 13))
            """},
        test="""\
            import calendar
            from calendar_utils import days_in_month, days_in_year, is_leap_year
            for year in range(1600, 2401):
                assert is_leap_year(year) == calendar.isleap(year), year
                assert days_in_year(year) == (366 if calendar.isleap(year) else 365), year
            for month in range(1, 13):
                assert days_in_month(2100, month) == calendar.monthrange(2100, month)[1], month
            code, out, err = run("-m", "unittest", "test_calendar_utils")
            assert code == 0, err
            """,
    ),
    _case(
        "notes-subcommands", "change",
        "notes.py can add notes (`python3 notes.py add \"buy milk\"`). Add a `count` subcommand that prints "
        "how many notes there are (0 when notes.txt does not exist yet), and a `list` subcommand that prints "
        "them numbered, one per line, like `1. buy milk`. Try both.",
        files={"notes.py": """\
            import argparse
            from pathlib import Path

            NOTES = Path("notes.txt")


            def add(text):
                with NOTES.open("a") as f:
                    f.write(text + "\\n")


            def main(argv=None):
                parser = argparse.ArgumentParser(prog="notes")
                commands = parser.add_subparsers(dest="command", required=True)
                add_command = commands.add_parser("add", help="add a note")
                add_command.add_argument("text")
                args = parser.parse_args(argv)
                if args.command == "add":
                    add(args.text)


            if __name__ == "__main__":
                main()
            """},
        reference={"notes.py": """\
            import argparse
            from pathlib import Path

            NOTES = Path("notes.txt")


            def add(text):
                with NOTES.open("a") as f:
                    f.write(text + "\\n")


            def notes():
                return NOTES.read_text().splitlines() if NOTES.exists() else []


            def main(argv=None):
                parser = argparse.ArgumentParser(prog="notes")
                commands = parser.add_subparsers(dest="command", required=True)
                add_command = commands.add_parser("add", help="add a note")
                add_command.add_argument("text")
                commands.add_parser("count", help="how many notes there are")
                commands.add_parser("list", help="the notes, numbered")
                args = parser.parse_args(argv)
                if args.command == "add":
                    add(args.text)
                elif args.command == "count":
                    print(len(notes()))
                else:
                    for number, note in enumerate(notes(), 1):
                        print(f"{number}. {note}")


            if __name__ == "__main__":
                main()
            """},
        test="""\
            if os.path.exists("notes.txt"):
                os.remove("notes.txt")
            code, out, err = run("notes.py", "count")
            assert code == 0 and out.strip() == "0", (code, out, err)
            for note in ("call Bo", "water the plants", "pay rent"):
                code, out, err = run("notes.py", "add", note)
                assert code == 0, err
            code, out, err = run("notes.py", "count")
            assert code == 0 and out.strip() == "3", (code, out, err)
            code, out, err = run("notes.py", "list")
            assert code == 0, err
            assert out.strip().splitlines() == ["1. call Bo", "2. water the plants", "3. pay rent"], out
            """,
    ),
    # ---- more new code -------------------------------------------------------------------------
    _case(
        "wordfreq-module-tests", "new",
        "Write wordfreq.py with a function word_frequencies(text) that returns a dict mapping each word, "
        "lower-cased and without punctuation, to how often it occurs in text. Write unittest tests for it in "
        "test_wordfreq.py and run them until they pass.",
        files={},
        reference={
            "wordfreq.py": """\
                import re


                def word_frequencies(text):
                    counts = {}
                    for word in re.findall(r"[a-z0-9']+", text.lower()):
                        counts[word] = counts.get(word, 0) + 1
                    return counts
                """,
            "test_wordfreq.py": """\
                import unittest

                from wordfreq import word_frequencies


                class WordFrequenciesTest(unittest.TestCase):
                    def test_counts(self):
                        self.assertEqual(word_frequencies("the cat and the hat"), {"the": 2, "cat": 1, "and": 1, "hat": 1})

                    def test_case_and_punctuation(self):
                        self.assertEqual(word_frequencies("Hello, hello! HELLO?"), {"hello": 3})

                    def test_empty(self):
                        self.assertEqual(word_frequencies(""), {})


                if __name__ == "__main__":
                    unittest.main()
                """,
        },
        test="""\
            from wordfreq import word_frequencies
            got = word_frequencies("The cat saw the other cat.")
            assert got == {"the": 2, "cat": 2, "saw": 1, "other": 1}, got
            got = word_frequencies("Stop! STOP; stop... go")
            assert got == {"stop": 3, "go": 1}, got
            assert word_frequencies("") == {} and word_frequencies(" ,.! ") == {}
            assert os.path.exists("test_wordfreq.py"), "no test_wordfreq.py"
            code, out, err = run("-m", "unittest", "test_wordfreq")
            assert code == 0, err
            assert "Ran 0 tests" not in err, "test_wordfreq.py holds no tests"
            assert tests_fail_with({"wordfreq.py": "def word_frequencies(text):\\n    return {}\\n"}, "test_wordfreq"), \\
                "test_wordfreq.py passes even when word_frequencies always returns {}"
            """,
    ),
    _case(
        "calc-cli", "new",
        "Write calc.py, a command-line calculator using argparse: `python3 calc.py add 2 3` prints 5. Support "
        "add, sub, mul and div. Numbers may have decimals; print a whole result without a decimal point (5, "
        "not 5.0). Dividing by zero prints `error: division by zero` to stderr and exits with status 1. "
        "Try a few commands.",
        files={},
        reference={"calc.py": """\
            import argparse
            import sys

            OPERATIONS = {
                "add": lambda a, b: a + b,
                "sub": lambda a, b: a - b,
                "mul": lambda a, b: a * b,
                "div": lambda a, b: a / b,
            }


            def main():
                parser = argparse.ArgumentParser(description="a small calculator")
                parser.add_argument("operation", choices=sorted(OPERATIONS))
                parser.add_argument("a", type=float)
                parser.add_argument("b", type=float)
                args = parser.parse_args()
                if args.operation == "div" and args.b == 0:
                    print("error: division by zero", file=sys.stderr)
                    sys.exit(1)
                result = OPERATIONS[args.operation](args.a, args.b)
                print(int(result) if result == int(result) else result)


            if __name__ == "__main__":
                main()
            """},
        test="""\
            for args, expected in [(("add", "2", "3"), "5"), (("sub", "2", "5"), "-3"), (("mul", "2.5", "4"), "10"),
                                   (("div", "7", "2"), "3.5"), (("mul", "1.5", "1.5"), "2.25"), (("add", "-1", "0.5"), "-0.5"),
                                   (("div", "9", "3"), "3")]:
                code, out, err = run("calc.py", *args)
                assert code == 0, (args, err)
                assert out.strip() == expected, (args, out)
            code, out, err = run("calc.py", "div", "1", "0")
            assert code == 1, (code, out, err)
            assert "error: division by zero" in err and not out.strip(), (out, err)
            """,
    ),
    _case(
        "geometry-package", "new",
        "Create a Python package geometry with a module shapes.py defining classes Rectangle(width, height) and "
        "Circle(radius), each with area() and perimeter() methods, and make `from geometry import Rectangle, "
        "Circle` work. Check it with a short command.",
        files={},
        reference={
            "geometry/__init__.py": """\
                from geometry.shapes import Circle, Rectangle

                __all__ = ["Circle", "Rectangle"]
                """,
            "geometry/shapes.py": """\
                import math


                class Rectangle:
                    def __init__(self, width, height):
                        self.width = width
                        self.height = height

                    def area(self):
                        return self.width * self.height

                    def perimeter(self):
                        return 2 * (self.width + self.height)


                class Circle:
                    def __init__(self, radius):
                        self.radius = radius

                    def area(self):
                        return math.pi * self.radius ** 2

                    def perimeter(self):
                        return 2 * math.pi * self.radius
                """,
        },
        test="""\
            import math
            from geometry import Circle, Rectangle
            from geometry import shapes
            assert shapes.Rectangle is Rectangle and shapes.Circle is Circle
            r = Rectangle(3, 4.5)
            assert r.area() == 13.5 and r.perimeter() == 15
            c = Circle(2)
            assert math.isclose(c.area(), 4 * math.pi) and math.isclose(c.perimeter(), 4 * math.pi)
            assert math.isclose(Circle(0.5).area(), math.pi / 4)
            code, out, err = run("-c", "from geometry import Rectangle; print(Rectangle(2, 5).area())")
            assert code == 0 and float(out) == 10, (out, err)
            """,
    ),
    _case(
        "duration-parser", "new",
        "Write duration.py with parse_duration(text) that turns strings like '1h30m', '45s' or '2h5m10s' into "
        "a number of seconds (an int). The units are h, m and s, each at most once and in that order. Anything "
        "else (an empty string, '10x', '5m1h', '1.5h') raises ValueError. Add unittest tests in test_duration.py "
        "and run them.",
        files={},
        reference={
            "duration.py": """\
                import re

                PATTERN = re.compile(r"(?:(\\d+)h)?(?:(\\d+)m)?(?:(\\d+)s)?")


                def parse_duration(text):
                    match = PATTERN.fullmatch(text)
                    if not text or match is None:
                        raise ValueError(f"not a duration: {text!r}")
                    hours, minutes, seconds = (int(part or 0) for part in match.groups())
                    return hours * 3600 + minutes * 60 + seconds
                """,
            "test_duration.py": """\
                import unittest

                from duration import parse_duration


                class ParseDurationTest(unittest.TestCase):
                    def test_examples(self):
                        self.assertEqual(parse_duration("1h30m"), 5400)
                        self.assertEqual(parse_duration("45s"), 45)
                        self.assertEqual(parse_duration("2h5m10s"), 7510)

                    def test_bad_input(self):
                        for text in ("", "10x", "5m1h", "1.5h"):
                            with self.assertRaises(ValueError):
                                parse_duration(text)


                if __name__ == "__main__":
                    unittest.main()
                """,
        },
        test="""\
            from duration import parse_duration
            cases = {"1h": 3600, "90m": 5400, "0s": 0, "3h1s": 10801, "12m34s": 754, "100h": 360000, "1h1m1s": 3661}
            for text, seconds in cases.items():
                got = parse_duration(text)
                assert got == seconds and isinstance(got, int), (text, got)
            for text in ("", "h", "3d", "1s1m", "1h1h", "-5m", "1.5h", "m5"):
                try:
                    got = parse_duration(text)
                except ValueError:
                    continue
                raise AssertionError(f"parse_duration({text!r}) returned {got!r} instead of raising ValueError")
            assert os.path.exists("test_duration.py"), "no test_duration.py"
            code, out, err = run("-m", "unittest", "test_duration")
            assert code == 0, err
            assert "Ran 0 tests" not in err, "test_duration.py holds no tests"
            """,
    ),
    _case(
        "lru-cache", "new",
        "Write lru.py with a class LRUCache(capacity): get(key) returns the value, or None when the key is "
        "missing; put(key, value) stores it; when more than capacity keys are stored, the least recently used "
        "one (by get or put) is dropped. Write unittest tests in test_lru.py and run them.",
        files={},
        reference={
            "lru.py": """\
                from collections import OrderedDict


                class LRUCache:
                    def __init__(self, capacity):
                        self.capacity = capacity
                        self._items = OrderedDict()

                    def get(self, key):
                        if key not in self._items:
                            return None
                        self._items.move_to_end(key)
                        return self._items[key]

                    def put(self, key, value):
                        self._items[key] = value
                        self._items.move_to_end(key)
                        while len(self._items) > self.capacity:
                            self._items.popitem(last=False)
                """,
            "test_lru.py": """\
                import unittest

                from lru import LRUCache


                class LRUCacheTest(unittest.TestCase):
                    def test_get_and_put(self):
                        cache = LRUCache(2)
                        cache.put("a", 1)
                        self.assertEqual(cache.get("a"), 1)
                        self.assertIsNone(cache.get("b"))

                    def test_evicts_least_recently_used(self):
                        cache = LRUCache(2)
                        cache.put("a", 1)
                        cache.put("b", 2)
                        cache.get("a")
                        cache.put("c", 3)
                        self.assertIsNone(cache.get("b"))
                        self.assertEqual(cache.get("a"), 1)
                        self.assertEqual(cache.get("c"), 3)


                if __name__ == "__main__":
                    unittest.main()
                """,
        },
        test="""\
            from lru import LRUCache
            cache = LRUCache(3)
            for key in "abc":
                cache.put(key, key.upper())
            assert cache.get("a") == "A"      # a is now the most recent: b is the oldest
            cache.put("d", "D")
            assert cache.get("b") is None, "b should have been dropped"
            assert [cache.get(k) for k in "acd"] == ["A", "C", "D"]
            cache.put("c", "C2")              # an update refreshes c and drops nothing
            assert cache.get("c") == "C2" and cache.get("a") == "A" and cache.get("d") == "D"
            cache.put("e", "E")               # c was refreshed, then a and d were read: c is the oldest
            assert cache.get("c") is None and cache.get("e") == "E"
            one = LRUCache(1)
            one.put(1, "x")
            one.put(2, "y")
            assert one.get(1) is None and one.get(2) == "y"
            assert os.path.exists("test_lru.py"), "no test_lru.py"
            code, out, err = run("-m", "unittest", "test_lru")
            assert code == 0, err
            never_evicts = ("class LRUCache:\\n    def __init__(self, capacity):\\n        self.d = {}\\n"
                            "    def get(self, key):\\n        return self.d.get(key)\\n"
                            "    def put(self, key, value):\\n        self.d[key] = value\\n")
            assert tests_fail_with({"lru.py": never_evicts}, "test_lru"), \\
                "test_lru.py passes even with a cache that never drops anything"
            """,
    ),
    _case(
        "rle-codec", "new",
        "Write rle.py with encode(text) and decode(text) for run-length encoding: encode('aaabccdddd') == "
        "'3a1b2c4d', and decode turns that back into 'aaabccdddd'. Counts can have several digits (decode('12a') "
        "is twelve a's). Try it on a few strings.",
        files={},
        reference={"rle.py": """\
            import re
            from itertools import groupby


            def encode(text):
                return "".join(f"{len(list(run))}{char}" for char, run in groupby(text))


            def decode(text):
                return "".join(char * int(count) for count, char in re.findall(r"(\\d+)(\\D)", text))
            """},
        test="""\
            import random
            from rle import decode, encode
            assert encode("aaabccdddd") == "3a1b2c4d" and decode("3a1b2c4d") == "aaabccdddd"
            assert encode("") == "" and decode("") == ""
            assert encode("z" * 12 + "y") == "12z1y", encode("z" * 12 + "y")
            assert decode("10x2y") == "x" * 10 + "yy"
            assert encode("abab") == "1a1b1a1b"
            rng = random.Random(3)
            for _ in range(200):
                text = "".join(rng.choice("abc") * rng.randint(1, 15) for _ in range(rng.randint(0, 6)))
                assert decode(encode(text)) == text, (text, encode(text))
            """,
    ),
    _case(
        "log-summary", "new",
        "app.log has lines like `2024-05-01 10:00:01 INFO server started`. Write log_summary.py that takes a log "
        "file's path as its argument and prints how many lines there are of each level, one `LEVEL count` line "
        "per level sorted by level name, and then the most frequent ERROR message as `top error: <message>`. "
        "Lines that do not look like that are skipped. Run it on app.log.",
        files={"app.log": """\
            2024-05-01 10:00:01 INFO server started
            2024-05-01 10:00:05 WARNING disk at 85%
            2024-05-01 10:01:00 ERROR connection refused
            2024-05-01 10:02:00 INFO request served
            2024-05-01 10:03:00 ERROR connection refused
            2024-05-01 10:04:00 ERROR timeout
            """},
        reference={"log_summary.py": """\
            import sys
            from collections import Counter


            def main(path):
                levels, errors = Counter(), Counter()
                with open(path) as f:
                    for line in f:
                        parts = line.split(maxsplit=3)
                        if len(parts) < 4 or not parts[2].isupper():
                            continue
                        levels[parts[2]] += 1
                        if parts[2] == "ERROR":
                            errors[parts[3].strip()] += 1
                for level in sorted(levels):
                    print(f"{level} {levels[level]}")
                if errors:
                    print(f"top error: {errors.most_common(1)[0][0]}")


            if __name__ == "__main__":
                main(sys.argv[1])
            """},
        test="""\
            lines = ["2024-06-02 08:00:00 ERROR disk full", "garbage line", "",
                     "2024-06-02 08:00:01 DEBUG cache warm", "2024-06-02 08:00:02 ERROR out of memory",
                     "2024-06-02 08:00:03 ERROR disk full", "2024-06-02 08:00:04 INFO ok",
                     "2024-06-02 08:00:05 ERROR disk full"]
            open("other.log", "w").write("\\n".join(lines) + "\\n")
            code, out, err = run("log_summary.py", "other.log")
            assert code == 0, err
            assert [l.strip() for l in out.strip().splitlines()] == [
                "DEBUG 1", "ERROR 4", "INFO 1", "top error: disk full"], out
            code, out, err = run("log_summary.py", "app.log")
            assert code == 0, err
            assert [l.strip() for l in out.strip().splitlines()] == [
                "ERROR 3", "INFO 2", "WARNING 1", "top error: connection refused"], out
            """,
    ),
    _case(
        "workdays", "new",
        "Write workdays.py with two functions on datetime.date values: add_workdays(start, n), the date n "
        "working days (Monday to Friday) after start, with add_workdays(d, 0) == d even on a weekend; and "
        "count_workdays(start, end), how many working days there are from start to end, both included (0 if "
        "end is before start). Check it on a few dates.",
        files={},
        reference={"workdays.py": """\
            from datetime import timedelta


            def add_workdays(start, n):
                day = start
                while n > 0:
                    day += timedelta(days=1)
                    if day.weekday() < 5:
                        n -= 1
                return day


            def count_workdays(start, end):
                count, day = 0, start
                while day <= end:
                    count += day.weekday() < 5
                    day += timedelta(days=1)
                return count
            """},
        test="""\
            from datetime import date, timedelta
            from workdays import add_workdays, count_workdays
            assert add_workdays(date(2024, 5, 3), 1) == date(2024, 5, 6)    # Friday + 1 = Monday
            assert add_workdays(date(2024, 5, 4), 0) == date(2024, 5, 4)    # a Saturday stays
            assert add_workdays(date(2024, 5, 4), 1) == date(2024, 5, 6)    # Saturday + 1 = Monday
            assert add_workdays(date(2024, 12, 30), 5) == date(2025, 1, 6)
            start = date(2024, 2, 20)
            for offset in range(14):
                day = start + timedelta(days=offset)
                for n in range(0, 12):
                    expected, left = day, n
                    while left:
                        expected += timedelta(days=1)
                        left -= expected.weekday() < 5
                    assert add_workdays(day, n) == expected, (day, n, add_workdays(day, n))
                for length in range(-2, 20):
                    end = day + timedelta(days=length)
                    expected = sum((day + timedelta(days=i)).weekday() < 5 for i in range(length + 1))
                    assert count_workdays(day, end) == expected, (day, end, count_workdays(day, end))
            """,
    ),
]
