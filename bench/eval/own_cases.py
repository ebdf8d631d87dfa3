"""Our own multi-step cases: each needs several tools (read, write, edit, run) on a small repo.

Every case lists the files written before the message, the message, a hidden test (a Python
program run in a copy of the final workspace; exit 0 = pass) and a reference solution that
passes it. tests/test_eval_smoke.py checks each case both ways: the starting files fail the
hidden test and the reference passes it, so a case can neither pass by doing nothing nor be
impossible.
"""

from __future__ import annotations

from textwrap import dedent

from bench.eval.cases import Case

# Helpers every hidden test may use: run a script, read its output.
PRELUDE = dedent("""\
    import subprocess, sys
    def run(*args, input=None):
        done = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=20, input=input)
        return done.returncode, done.stdout, done.stderr
    """)


def _case(name: str, message: str, files: dict[str, str], reference: dict[str, str], test: str) -> Case:
    return Case(name=name, group="own", message=message, files={k: dedent(v) for k, v in files.items()},
                reference={k: dedent(v) for k, v in {**files, **reference}.items()},
                hidden_test=PRELUDE + dedent(test))


OWN_CASES: list[Case] = [
    _case(
        "fix-failing-test",
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
        "cli-flag",
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
        "traceback-bug",
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
        "rename-across-files",
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
        "write-then-edit",
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
        "function-and-test",
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
        "off-by-one",
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
        "sum-and-max",
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
        "class-from-tests",
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
        "csv-report",
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
        "validate-input",
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
        "package-import",
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
]
